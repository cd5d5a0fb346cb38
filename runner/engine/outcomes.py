"""Recording what became of a claimed send: sent, failed, cancelled, and the next repeat.

Each function runs inside the caller's write transaction and is fenced by the claim's
lease token: a sender whose lease expired cannot finish a send another sender took over.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from runner.core import timing
from runner.core.model import Automation
from runner.core.records import (
    SERIES_ENDING,
    CancelReason,
    Message,
    PendingSend,
    SendStatus,
    Subscriber,
)
from runner.engine.catalog import Catalog, Live
from runner.engine.context import EngineContext, new_id
from runner.engine.status_changes import REVISION_META
from runner.providers import retry
from runner.providers.base import OutgoingMessage, ProviderError, SendResult
from runner.store.base import WriteTx
from runner.store.claims import EmailEvent

log = logging.getLogger("runner.engine.sender")

UNKNOWN = "outcome_unknown"  # status of a message that may or may not have gone out
PROVIDER_ERROR = retry.PROVIDER_ERROR
RENDER_ERROR = CancelReason.RENDER_ERROR.value


@dataclass(frozen=True)
class Stored:
    """A message this transaction stored, with its send's due time (for the send metrics)."""

    message: Message
    due_at: datetime

    @property
    def delay(self) -> float:
        """Seconds from the send's due time to the message's hand-over (never negative)."""
        return max(0.0, (self.message.sent_at - self.due_at).total_seconds())


@dataclass(frozen=True)
class Ready:
    """A send that passed its checks, with what rendering needs (read in the claim tx)."""

    send: PendingSend
    live: Live
    subscriber: Subscriber


@dataclass(frozen=True)
class Scope:
    """What recording the fate of a claimed send needs besides the transaction."""

    catalog: Catalog
    ctx: EngineContext
    token: str  # the claim's lease token: it fences every write
    now: datetime


@dataclass(frozen=True)
class Attempt:
    """A ready send's message as handed (or about to be handed) to a provider."""

    ready: Ready
    outgoing: OutgoingMessage
    provider: str  # its name in postwright.yaml
    provider_type: str
    revision: int  # the automation revision the message was rendered with


def zone(model: Automation, subscriber: Subscriber, ctx: EngineContext) -> ZoneInfo:
    window = model.send_window
    name = window.timezone if window is not None else None
    return timing.zone_for(name, subscriber.fields, ctx.default_timezone)


def render_failed(
    tx: WriteTx, ctx: EngineContext, ready: Ready, token: str, now: datetime, error: str
) -> None:
    # Not an email failure: no message, no `email.failed` event.
    send = ready.send
    if finish(tx, send, token, SendStatus.FAILED, now, reason=RENDER_ERROR, last_error=error):
        log.warning("send %s of %s: render error: %s", send.id, send.automation_id, error)
        next_repeat(tx, ready.live, ctx, send, ready.subscriber, now)


def sent(
    tx: WriteTx, scope: Scope, attempt: Attempt, result: SendResult, *, reports_delivery: bool
) -> Stored | None:
    """The provider accepted the message: `email.sent` (and `email.delivered` for a
    provider without delivery reports, the outbox). The message stored, if any."""
    send, now = attempt.ready.send, scope.now
    if not finish(tx, send, scope.token, SendStatus.SENT, now):
        return None
    message = message_of(scope, attempt, result)
    tx.insert_message(message)
    internal_event(tx, scope.catalog, "email.sent", send, attempt.outgoing.message_id, now)
    if not reports_delivery:
        internal_event(tx, scope.catalog, "email.delivered", send, attempt.outgoing.message_id, now)
    next_repeat(tx, attempt.ready.live, scope.ctx, send, attempt.ready.subscriber, now)
    return Stored(message, send.due_at)


def sent_all(
    tx: WriteTx,
    scope: Scope,
    accepted: Sequence[tuple[Attempt, SendResult]],
    *,
    reports_delivery: bool,
) -> list[Stored]:
    """`sent` for the accepted messages of one request, the same rows written with one
    statement each for the claims, the messages and the events instead of one per send
    (events in the same order: each send's `email.sent`, then its `email.delivered`)."""
    now = scope.now
    ended = tx.finish_claims(
        [attempt.ready.send.id for attempt, _ in accepted], scope.token, SendStatus.SENT, now
    )
    done = [(attempt, result) for attempt, result in accepted if attempt.ready.send.id in ended]
    for attempt, _ in accepted:
        if attempt.ready.send.id not in ended:
            log.warning("send %s: lease lost, its sent result is dropped", attempt.ready.send.id)
    if not done:
        return []
    messages = [message_of(scope, attempt, result) for attempt, result in done]
    tx.insert_messages(messages)
    names = ("email.sent",) if reports_delivery else ("email.sent", "email.delivered")
    heard = Heard(tx, scope.catalog)
    tx.add_email_events(
        [
            email_event(heard, name, attempt.ready.send, attempt.outgoing.message_id, now)
            for attempt, _ in done
            for name in names
        ]
    )
    for attempt, _ in done:
        next_repeat(
            tx, attempt.ready.live, scope.ctx, attempt.ready.send, attempt.ready.subscriber, now
        )
    return [
        Stored(message, attempt.ready.send.due_at)
        for message, (attempt, _) in zip(messages, done, strict=True)
    ]


def failed(
    tx: WriteTx,
    scope: Scope,
    attempt: Attempt,
    error: ProviderError,
    *,
    reason: str = PROVIDER_ERROR,
) -> Stored | None:
    """A permanent failure: the message is kept as `failed` and `email.failed` is raised."""
    send, now = attempt.ready.send, scope.now
    if not finish(
        tx, send, scope.token, SendStatus.FAILED, now, reason=reason, last_error=error.message
    ):
        return None
    message = message_of(scope, attempt, None, status="failed")
    tx.insert_message(message)
    internal_event(tx, scope.catalog, "email.failed", send, attempt.outgoing.message_id, now)
    next_repeat(tx, attempt.ready.live, scope.ctx, send, attempt.ready.subscriber, now)
    log.warning("send %s of %s failed: %s", send.id, send.automation_id, error.message)
    return Stored(message, send.due_at)


def unknown(
    tx: WriteTx, scope: Scope, attempt: Attempt, last_error: str, *, sent_at: datetime | None = None
) -> Stored | None:
    """The request may have reached the provider and is not repeated: the send is
    `outcome_unknown`, and its message is kept (sent at `sent_at`, default now) so that
    provider events naming it reconcile the send. No `email.sent` / `email.failed`."""
    send, now = attempt.ready.send, scope.now
    if not finish(tx, send, scope.token, SendStatus.OUTCOME_UNKNOWN, now, last_error=last_error):
        return None
    message = message_of(scope, attempt, None, status=UNKNOWN, sent_at=sent_at)
    tx.insert_message(message)
    next_repeat(tx, attempt.ready.live, scope.ctx, send, attempt.ready.subscriber, now)
    log.warning("send %s of %s: %s", send.id, send.automation_id, last_error)
    return Stored(message, send.due_at)


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


def message_of(
    scope: Scope,
    attempt: Attempt,
    result: SendResult | None,
    *,
    status: str = "sent",
    sent_at: datetime | None = None,
) -> Message:
    """The stored message of an attempt; its listeners are the email triggers on its
    automation running when it was sent."""
    send, outgoing = attempt.ready.send, attempt.outgoing
    when = sent_at if sent_at is not None else scope.now
    return Message(
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
        provider=attempt.provider,
        provider_type=attempt.provider_type,
        provider_message_id=None if result is None else result.provider_message_id,
        sent_at=when,
        revision=attempt.revision,
        listeners=scope.catalog.listeners_at(send.automation_id, when),
        status=status,
    )


def internal_event(
    tx: WriteTx, catalog: Catalog, name: str, send: PendingSend, message_id: str, now: datetime
) -> None:
    """Store `email.<action>` of a send. Stored processed when no automation listens (no
    email trigger on its automation, no `exit_on` of that name): processing would find
    nothing to do. It is stored all the same, for the pre-send `exit_on` check of an
    automation applied later and for erasure. A reload committed since `catalog` was built
    may have added a listener, so the event then waits for processing like any other."""
    tx.add_email_events([email_event(Heard(tx, catalog), name, send, message_id, now)])


class Heard:
    """Whether an automation may listen to an internal event of a send: one the catalog
    shows listening, or any while the catalog is not current (a reload committed since it
    was built). The store's revision is read once, and only when the catalog hears nobody."""

    def __init__(self, tx: WriteTx, catalog: Catalog) -> None:
        self._tx = tx
        self._catalog = catalog
        self._current: bool | None = None

    def __call__(self, name: str, automation_id: str) -> bool:
        """Whether `name` of a send of `automation_id` must wait for processing."""
        if self._catalog.listens_to_email_event(name, automation_id):
            return True
        if self._current is None:
            self._current = catalog_current(self._tx, self._catalog)
        return not self._current


def email_event(
    heard: Heard, name: str, send: PendingSend, message_id: str, now: datetime
) -> EmailEvent:
    """The internal event `name` of `send` (see `internal_event`)."""
    data: dict[str, object] = {
        "automation": send.automation_id,
        "message_id": message_id,
        "sent_at": now.isoformat(),
    }
    return EmailEvent(name, send.email, data, now, not heard(name, send.automation_id))


def catalog_current(tx: WriteTx, catalog: Catalog) -> bool:
    """Whether `catalog` still shows the applied automations (no reload committed since)."""
    return catalog.revision is None or (tx.meta(REVISION_META) or "") == catalog.revision


# --- cancellation and the next repeat ----------------------------------------------


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
    """Create repeat k+1 of the series, anchored on the series' trigger time; none after a
    send halted in flight (a stop, a delete or the subscriber's deletion came meanwhile)."""
    model = live.model
    repeat = model.repeat
    if repeat is None or send.repeat_index >= repeat.times:
        return
    current = tx.pending_send(send.id)  # `send` is as claimed: read whether it was halted since
    if current is None or current.halted is not None:
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
