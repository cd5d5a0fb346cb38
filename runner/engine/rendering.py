"""Rendering the ready sends of one round, and what a render that could not run becomes.

Every ready send of a round is rendered in one hand-over to the render workers
(runner.templating.renderpool): the server's event loop never runs a template. A template's own
failure (`RenderError`) fails its send; a render that could not run (`RenderUnavailable`:
a worker killed by the system, no worker available) is retried like a provider's
temporary error, and fails only once the send's attempts are spent.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta

from runner.core.unsubscribe import make_token, unsubscribe_url
from runner.engine.context import EngineContext
from runner.engine.outcomes import Ready, render_failed
from runner.providers import retry
from runner.store.base import WriteTx
from runner.templating.render import EmailJob, RenderError, RenderUnavailable, email_job
from runner.templating.renderpool import RenderPool
from runner.templating.renderprocess import Outcome

log = logging.getLogger("runner.engine.sender")


async def render_ready(
    ready: list[Ready], ctx: EngineContext, renderer: RenderPool
) -> list[tuple[Ready, Outcome]]:
    """Each ready send with its rendered email, or why it has none."""
    results: list[tuple[Ready, Outcome]] = []
    renderable: list[tuple[Ready, EmailJob]] = []
    for item in ready:
        try:
            renderable.append((item, _email_job(item, ctx)))
        except RenderError as error:
            results.append((item, error))
        except Exception:  # one broken send must not stop the others; it resumes later
            log.exception("send %s: rendering failed unexpectedly", item.send.id)
    outcomes = await renderer.render_all([job for _, job in renderable])
    results.extend((item, outcome) for (item, _), outcome in zip(renderable, outcomes, strict=True))
    return results


def retry_render(
    tx: WriteTx,
    ctx: EngineContext,
    ready: Ready,
    token: str,
    now: datetime,
    error: RenderUnavailable,
    rng: random.Random,
) -> None:
    """Put a send whose render could not run back for a retry after the backoff."""
    send = ready.send
    if send.attempts + 1 >= ctx.max_attempts:
        exhausted = f"retries exhausted after {send.attempts + 1} attempts: {error}"
        render_failed(tx, ctx, ready, token, now, exhausted)
        return
    delay = retry.backoff(send.attempts, rng, base=retry.BACKOFF_BASE, cap=retry.BACKOFF_CAP)
    if not tx.retry_claim(send.id, token, now + timedelta(seconds=delay), now, str(error)):
        log.warning("send %s: lease lost before its retry was recorded", send.id)


def _email_job(ready: Ready, ctx: EngineContext) -> EmailJob:
    # One message per send, named by it: every attempt renders the same body, as an
    # idempotency key demands (Resend answers 409 to a key reused with another body),
    # and the unsubscribe link can name the message before it is stored.
    send, live = ready.send, ready.live
    token = make_token(ctx.unsubscribe_key, send.subscriber_id, send.id)
    return email_job(
        live.model,
        live.row.templates,
        ready.subscriber,
        send.trigger_event,
        unsubscribe_url(ctx.public_url, token),
        send.overrides,
    )
