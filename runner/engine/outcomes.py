"""Recording what became of a claimed send: sent, failed, cancelled, and the next repeat.

Each function runs inside the caller's write transaction and is fenced by the claim's
lease token: a sender whose lease expired cannot finish a send another sender took over.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from runner import timing
from runner.engine.catalog import Catalog, Live
from runner.engine.context import EngineContext, new_id
from runner.model import Automation
from runner.providers import retry
from runner.providers.base import OutgoingMessage, Provider, ProviderError, SendResult
from runner.store.base import WriteTx
from runner.store.records import (
    SERIES_ENDING,
    CancelReason,
    Message,
    PendingSend,
    SendStatus,
    Subscriber,
)

log = logging.getLogger("runner.engine.sender")

UNKNOWN = "outcome_unknown"  # status of a message that may or may not have gone out
PROVIDER_ERROR = retry.PROVIDER_ERROR
RENDER_ERROR = CancelReason.RENDER_ERROR.value


@dataclass(frozen=True)
class Ready:
    """A send that passed its checks, with what rendering needs (read in the claim tx)."""

    send: PendingSend
    live: Live
    subscriber: Subscriber


def zone(model: Automation, subscriber: Subscriber, ctx: EngineContext) -> ZoneInfo:
    window = model.send_window
    name = window.timezone if window is not None else None
    return timing.zone_for(name, subscriber.fields, ctx.default_timezone)


def render_failed(
    tx: WriteTx, ctx: EngineContext, ready: Ready, token: str, now: datetime, error: str
) -> None:
    # Not an email failure (SPEC 3.4): no message, no `email.failed` event.
    send = ready.send
    if finish(tx, send, token, SendStatus.FAILED, now, reason=RENDER_ERROR, last_error=error):
        log.warning("send %s of %s: render error: %s", send.id, send.automation_id, error)
        next_repeat(tx, ready.live, ctx, send, ready.subscriber, now)


def sent(
    tx: WriteTx,
    catalog: Catalog,
    ctx: EngineContext,
    ready: Ready,
    token: str,
    now: datetime,
    outgoing: OutgoingMessage,
    provider: Provider,
    result: SendResult,
) -> None:
    send = ready.send
    if not finish(tx, send, token, SendStatus.SENT, now):
        return
    record_message(tx, catalog, ready, now, outgoing, provider.name, provider.type, result)
    internal_event(tx, "email.sent", send, outgoing.message_id, now)
    if not provider.reports_delivery:  # the outbox: sent counts as delivered (SPEC 3.5)
        internal_event(tx, "email.delivered", send, outgoing.message_id, now)
    next_repeat(tx, ready.live, ctx, send, ready.subscriber, now)


def failed(
    tx: WriteTx,
    catalog: Catalog,
    ctx: EngineContext,
    ready: Ready,
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
    if not finish(tx, send, token, SendStatus.FAILED, now, reason=reason, last_error=error.message):
        return
    name, kind = provider
    record_message(tx, catalog, ready, now, outgoing, name, kind, None, status="failed")
    internal_event(tx, "email.failed", send, outgoing.message_id, now)
    next_repeat(tx, ready.live, ctx, send, ready.subscriber, now)
    log.warning("send %s of %s failed: %s", send.id, send.automation_id, error.message)


def finish(
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


def record_message(
    tx: WriteTx,
    catalog: Catalog,
    ready: Ready,
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


def internal_event(
    tx: WriteTx, name: str, send: PendingSend, message_id: str, now: datetime
) -> None:
    data: dict[str, object] = {
        "automation": send.automation_id,
        "message_id": message_id,
        "sent_at": now.isoformat(),
    }
    tx.add_event(name, send.email, data, now, processed=False)


# --- cancellation and the next repeat (SPEC 3.2) -------------------------------------


def cancel(
    tx: WriteTx,
    live: Live | None,
    ctx: EngineContext,
    send: PendingSend,
    token: str,
    now: datetime,
    reason: CancelReason,
    subscriber: Subscriber | None,
) -> None:
    if not finish(tx, send, token, SendStatus.CANCELLED, now, reason=reason.value):
        return
    if live is not None and subscriber is not None and reason not in SERIES_ENDING:
        next_repeat(tx, live, ctx, send, subscriber, now)


def next_repeat(
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
        zone(model, subscriber, ctx),
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
