"""The send loop: claim due sends, re-check them (SPEC 3.3), render, hand them to a provider.

Every step that writes runs in its own short write transaction; rendering and the provider
call run outside any transaction. The claim's lease token fences every later write, so a
sender whose lease expired (another took the send over) cannot finish it: its late result
is dropped and logged. A failure of one send never stops the loop (SPEC 7).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from runner import conditions, timing
from runner.engine.catalog import Catalog, Live
from runner.engine.context import EngineContext, new_id
from runner.model import Automation
from runner.providers.base import OutgoingMessage, Provider, ProviderError, SendResult
from runner.render import RenderedEmail, RenderError, render_email
from runner.store.base import Store, WriteTx
from runner.store.records import (
    SERIES_ENDING,
    CancelReason,
    Message,
    PendingSend,
    SendStatus,
    Subscriber,
)
from runner.unsubscribe import make_token, unsubscribe_url

log = logging.getLogger(__name__)

BACKOFF_BASE = 30.0  # seconds before the first retry, at most (full jitter)
BACKOFF_CAP = 3600.0  # no retry waits longer, unless the provider asks for it
CONCURRENCY = 8  # provider calls in flight at once per batch
RETRIES_EXHAUSTED = "retries_exhausted"
PROVIDER_ERROR = "provider_error"
RENDER_ERROR = CancelReason.RENDER_ERROR.value
# Effective statuses in which a send that was already attempted may still be retried.
_RETRY_STATUSES = frozenset({"running", "paused"})
_STATUS_REASONS = {
    "paused": CancelReason.PAUSED,
    "stopped": CancelReason.STOPPED,
    "deleted": CancelReason.DELETED,
}


def backoff_delay(
    attempts: int,
    rng: random.Random,
    retry_after: float | None = None,
    *,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
) -> float:
    """Seconds before the next try of a send tried `attempts` times before the failed try.

    Full jitter (uniform in [0, min(cap, base * 2**attempts)]), or longer when the
    provider asked for `retry_after` seconds.
    """
    delay = rng.uniform(0.0, min(cap, base * 2.0**attempts))
    return max(delay, retry_after) if retry_after is not None else delay


@dataclass(frozen=True)
class _Ready:
    """A send that passed its checks, with what rendering needs (read in the claim tx)."""

    send: PendingSend
    live: Live
    subscriber: Subscriber


async def send_due(
    store: Store,
    catalog: Catalog,
    ctx: EngineContext,
    providers: Mapping[str, Provider],
    now: datetime,
    limit: int = 100,
    *,
    rng: random.Random | None = None,
    concurrency: int = CONCURRENCY,
) -> int:
    """Claim up to `limit` due sends and take each to its end; returns how many were claimed.

    Up to `concurrency` sends are in flight at once, so a slow provider call does not hold
    up the rest of the batch. `rng` draws the retry jitter (tests pass a seeded one).
    """
    token = new_id(now)
    lease_until = now + timedelta(seconds=ctx.lease_seconds)
    claimed = await store.write(lambda tx: tx.claim_due(now, limit, lease_until, token))
    jitter = rng if rng is not None else random.Random()
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(send: PendingSend) -> None:
        async with gate:
            try:
                await _send_one(store, catalog, ctx, providers, now, token, send, jitter)
            except Exception:  # one broken send must not stop the others
                log.exception("send %s of %s failed unexpectedly", send.id, send.automation_id)

    await asyncio.gather(*(one(send) for send in claimed))
    return len(claimed)


async def _send_one(
    store: Store,
    catalog: Catalog,
    ctx: EngineContext,
    providers: Mapping[str, Provider],
    now: datetime,
    token: str,
    send: PendingSend,
    rng: random.Random,
) -> None:
    ready = await store.write(lambda tx: _check(tx, catalog, ctx, send, token, now))
    if ready is None:
        return
    message_id = new_id(now)  # before rendering: the unsubscribe link names the message
    try:
        rendered = _render(ready, ctx, message_id)
    except RenderError as error:
        reason = str(error)
        await store.write(lambda tx: _render_failed(tx, ctx, ready, token, now, reason))
        return
    model = ready.live.model
    provider = providers.get(model.provider)
    outgoing = OutgoingMessage(
        send_id=send.id,
        message_id=message_id,
        to=ready.subscriber.email,
        from_=model.email.from_,
        reply_to=model.email.reply_to,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        headers=dict(rendered.headers),
        tags=list(model.email.tags),
    )
    if provider is None:
        absent = ProviderError(f"provider {model.provider!r} is not configured", retryable=False)
        missing = (model.provider, "")
        await store.write(
            lambda tx: _failed(tx, catalog, ctx, ready, token, now, outgoing, missing, absent)
        )
        return
    try:
        result = await provider.send(outgoing)
    except ProviderError as error:
        failure = error
        await store.write(
            lambda tx: _provider_failed(
                tx, catalog, ctx, ready, token, now, outgoing, provider, failure, rng
            )
        )
        return
    await store.write(
        lambda tx: _sent(tx, catalog, ctx, ready, token, now, outgoing, provider, result)
    )


# --- checks just before sending (SPEC 3.3) -------------------------------------------


def _check(
    tx: WriteTx, catalog: Catalog, ctx: EngineContext, send: PendingSend, token: str, now: datetime
) -> _Ready | None:
    """Cancel, reschedule, or hand back a send ready to render (None: nothing to send)."""
    current = tx.pending_send(send.id)
    if current is None or current.status != SendStatus.CLAIMED or current.lease_token != token:
        return None  # taken over or cancelled since the claim
    live = catalog.by_id.get(send.automation_id)
    if live is None:
        _cancel(tx, None, ctx, current, token, now, CancelReason.DELETED, None)
        return None
    subscriber = tx.subscriber_by_id(current.subscriber_id)
    reason = _cancel_reason(tx, live, current, subscriber, now)
    if reason is not None:
        _cancel(tx, live, ctx, current, token, now, reason, subscriber)
        return None
    assert subscriber is not None  # _cancel_reason refuses a missing subscriber
    window = live.model.send_window
    if window is not None and not current.skip_window:  # "send now" skips the window
        zone = _zone(live.model, subscriber, ctx)
        if not timing.in_window(now, window, zone):
            # A late send waits for the next opening, without counting an attempt.
            opening = timing.next_opening(now, window, zone)
            if not tx.reschedule(current.id, opening, now, token=token):
                log.warning("send %s: lease lost before its window wait was recorded", send.id)
            return None
    return _Ready(current, live, subscriber)


def _cancel_reason(
    tx: WriteTx, live: Live, send: PendingSend, subscriber: Subscriber | None, now: datetime
) -> CancelReason | None:
    """The first 3.3 check `send` fails, in the SPEC's order; None when it passes all."""
    if send.attempts > 0:
        # A retry skips the pause check; a stop or delete still ends it.
        for instant in (send.due_at, now):
            status = live.status_at(instant)
            if status not in _RETRY_STATUSES:
                return _STATUS_REASONS.get(status or "", CancelReason.NOT_RUNNING)
    else:
        for instant in (send.due_at, now):
            if not live.running_at(instant):
                status = live.status_at(instant) or ""
                return _STATUS_REASONS.get(status, CancelReason.NOT_RUNNING)
    if subscriber is None or subscriber.deleted_at is not None:
        return CancelReason.DELETED_SUBSCRIBER
    if subscriber.suppressed is not None:
        return CancelReason.SUPPRESSED
    model = live.model
    if model.audience is not None:
        context = {
            "subscriber": subscriber_context(subscriber, send.overrides),
            "event": send.trigger_event,
        }
        if not conditions.evaluate(model.audience, context):
            return CancelReason.AUDIENCE
    if model.exit_on and _exited(tx, model, send, subscriber):
        return CancelReason.EXIT_ON
    return None


def _exited(tx: WriteTx, model: Automation, send: PendingSend, subscriber: Subscriber) -> bool:
    names = {exit_on.event for exit_on in model.exit_on}
    person = subscriber_context(subscriber, None)
    for event in tx.events_after(subscriber.email, names, send.trigger_at):
        context = {
            "subscriber": person,
            "event": {
                "name": event.type,
                "data": event.data,
                "occurred_at": (event.occurred_at or event.received_at).isoformat(),
            },
        }
        for exit_on in model.exit_on:
            if exit_on.event == event.type and (
                exit_on.where is None or conditions.evaluate(exit_on.where, context)
            ):
                return True
    return False


def subscriber_context(
    subscriber: Subscriber, overrides: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The `subscriber` of a condition context, with api trigger data overlaid on fields."""
    return {
        "email": subscriber.email,
        "fields": {**subscriber.fields, **(overrides or {})},
        "groups": sorted(subscriber.groups),
    }


def _zone(model: Automation, subscriber: Subscriber, ctx: EngineContext) -> ZoneInfo:
    window = model.send_window
    name = window.timezone if window is not None else None
    return timing.zone_for(name, subscriber.fields, ctx.default_timezone)


# --- rendering and results -----------------------------------------------------------


def _render(ready: _Ready, ctx: EngineContext, message_id: str) -> RenderedEmail:
    send, live = ready.send, ready.live
    token = make_token(ctx.unsubscribe_key, send.subscriber_id, message_id)
    return render_email(
        live.model,
        live.row.templates,
        ready.subscriber,
        send.trigger_event,
        unsubscribe_url(ctx.public_url, token),
        send.overrides,
    )


def _render_failed(
    tx: WriteTx, ctx: EngineContext, ready: _Ready, token: str, now: datetime, error: str
) -> None:
    # Not an email failure (SPEC 3.4): no message, no `email.failed` event.
    send = ready.send
    if _finish(tx, send, token, SendStatus.FAILED, now, reason=RENDER_ERROR, last_error=error):
        log.warning("send %s of %s: render error: %s", send.id, send.automation_id, error)
        _next_repeat(tx, ready.live, ctx, send, ready.subscriber, now)


def _sent(
    tx: WriteTx,
    catalog: Catalog,
    ctx: EngineContext,
    ready: _Ready,
    token: str,
    now: datetime,
    outgoing: OutgoingMessage,
    provider: Provider,
    result: SendResult,
) -> None:
    send = ready.send
    if not _finish(tx, send, token, SendStatus.SENT, now):
        return
    _record_message(tx, catalog, ready, now, outgoing, provider.name, provider.type, result)
    _internal_event(tx, "email.sent", send, outgoing.message_id, now)
    if not provider.reports_delivery:  # the outbox: sent counts as delivered (SPEC 3.5)
        _internal_event(tx, "email.delivered", send, outgoing.message_id, now)
    _next_repeat(tx, ready.live, ctx, send, ready.subscriber, now)


def _provider_failed(
    tx: WriteTx,
    catalog: Catalog,
    ctx: EngineContext,
    ready: _Ready,
    token: str,
    now: datetime,
    outgoing: OutgoingMessage,
    provider: Provider,
    error: ProviderError,
    rng: random.Random,
) -> None:
    send = ready.send
    if error.outcome_unknown:
        # It may have gone out: never resent; provider events reconcile it (SPEC 7).
        if _finish(tx, send, token, SendStatus.OUTCOME_UNKNOWN, now, last_error=error.message):
            _next_repeat(tx, ready.live, ctx, send, ready.subscriber, now)
        return
    attempts = send.attempts + 1
    if error.retryable and attempts < ctx.max_attempts:
        delay = backoff_delay(send.attempts, rng, error.retry_after)
        due = now + timedelta(seconds=delay)
        if not tx.retry_claim(send.id, token, due, now, error.message):
            log.warning("send %s: lease lost before its retry was recorded", send.id)
        return
    if error.retryable:
        error = ProviderError(
            f"retries exhausted after {attempts} attempts: {error.message}", retryable=False
        )
        reason = RETRIES_EXHAUSTED
    else:
        reason = PROVIDER_ERROR
    names = (provider.name, provider.type)
    _failed(tx, catalog, ctx, ready, token, now, outgoing, names, error, reason=reason)


def _failed(
    tx: WriteTx,
    catalog: Catalog,
    ctx: EngineContext,
    ready: _Ready,
    token: str,
    now: datetime,
    outgoing: OutgoingMessage,
    provider: tuple[str, str],
    error: ProviderError,
    *,
    reason: str = PROVIDER_ERROR,
) -> None:
    """A permanent failure: the message is kept as `failed` and `email.failed` is raised."""
    send = ready.send
    if not _finish(
        tx, send, token, SendStatus.FAILED, now, reason=reason, last_error=error.message
    ):
        return
    name, kind = provider
    _record_message(tx, catalog, ready, now, outgoing, name, kind, None, status="failed")
    _internal_event(tx, "email.failed", send, outgoing.message_id, now)
    _next_repeat(tx, ready.live, ctx, send, ready.subscriber, now)
    log.warning("send %s of %s failed: %s", send.id, send.automation_id, error.message)


def _finish(
    tx: WriteTx,
    send: PendingSend,
    token: str,
    to: SendStatus,
    now: datetime,
    *,
    reason: str | None = None,
    last_error: str | None = None,
) -> bool:
    done = tx.finish_claim(send.id, token, to, now, reason=reason, last_error=last_error)
    if not done:
        log.warning("send %s: lease lost, its %s result is dropped", send.id, to.value)
    return done


def _record_message(
    tx: WriteTx,
    catalog: Catalog,
    ready: _Ready,
    now: datetime,
    outgoing: OutgoingMessage,
    provider_name: str,
    provider_type: str,
    result: SendResult | None,
    *,
    status: str = "sent",
) -> None:
    send = ready.send
    tx.insert_message(
        Message(
            id=outgoing.message_id,
            pending_send_id=send.id,
            automation_id=send.automation_id,
            subscriber_id=send.subscriber_id,
            to=outgoing.to,
            from_=outgoing.from_,
            subject=outgoing.subject,
            html=outgoing.html,
            text=outgoing.text,
            headers=outgoing.headers,
            provider=provider_name,
            provider_type=provider_type,
            provider_message_id=None if result is None else result.provider_message_id,
            sent_at=now,
            revision=ready.live.row.revision,
            listeners=catalog.listeners_at(send.automation_id, now),
            status=status,
        )
    )


def _internal_event(
    tx: WriteTx, name: str, send: PendingSend, message_id: str, now: datetime
) -> None:
    data: dict[str, object] = {
        "automation": send.automation_id,
        "message_id": message_id,
        "sent_at": now.isoformat(),
    }
    tx.add_event(name, send.email, data, now, processed=False)


# --- cancellation and the next repeat (SPEC 3.2) -------------------------------------


def _cancel(
    tx: WriteTx,
    live: Live | None,
    ctx: EngineContext,
    send: PendingSend,
    token: str,
    now: datetime,
    reason: CancelReason,
    subscriber: Subscriber | None,
) -> None:
    if not _finish(tx, send, token, SendStatus.CANCELLED, now, reason=reason.value):
        return
    if live is not None and subscriber is not None and reason not in SERIES_ENDING:
        _next_repeat(tx, live, ctx, send, subscriber, now)


def _next_repeat(
    tx: WriteTx,
    live: Live,
    ctx: EngineContext,
    send: PendingSend,
    subscriber: Subscriber,
    now: datetime,
) -> None:
    """Create repeat k+1 of the series, anchored on the series' trigger time."""
    model = live.model
    repeat = model.repeat
    if repeat is None or send.repeat_index >= repeat.times:
        return
    k = send.repeat_index + 1
    due = timing.repeat_due(
        send.trigger_at,
        model.wait,
        repeat.every,
        k,
        model.send_window,
        _zone(model, subscriber, ctx),
    )
    tx.insert_pending(
        PendingSend(
            id=new_id(now),
            automation_id=send.automation_id,
            subscriber_id=send.subscriber_id,
            email=send.email,
            due_at=due,
            status=SendStatus.PENDING,
            trigger_at=send.trigger_at,
            trigger_event=send.trigger_event,
            created_at=now,
            series_id=send.series_id,
            repeat_index=k,
            overrides=send.overrides,
        )
    )
