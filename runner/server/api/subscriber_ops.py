"""Operations of the subscribers API shared by the HTTP handlers and the CLI: upsert, show,
list, unsuppress and erase (docs/subscribers.md). Failures raise RequestError, whose body
the API answers and the CLI prints.

Every operation first catches up with the events received before it (read your writes), so
an event answered 202 a moment ago is always reflected, whichever replica took it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from runner.core.clock import Clock
from runner.core.records import IncomingEvent, SendStatus, Subscriber, SubscriberQuery
from runner.engine import erasure, suppression
from runner.engine.context import new_id
from runner.engine.subscribers import normalise_email
from runner.engine.worker import NotCaughtUp, Worker
from runner.server.api.base import iso
from runner.server.api.models import RequestError, body_hash
from runner.server.api.operations import send_payload
from runner.server.api.subscriber_views import (
    cursor_of,
    lift_payload,
    message_summary,
    subscriber_payload,
)
from runner.store.base import ReadTx, Store
from runner.store.errors import StoreUnavailable

log = logging.getLogger("postwright.subscribers")

MESSAGES_SHOWN = 20
# A client lifecycle event: it upserts the subscriber, and only its derived events
# (subscriber.added, group.joined/left, subscriber.updated when something changed) fire.
UPSERT_EVENT = "subscriber.updated"
DELETE_EVENT = "subscriber.deleted"
# How long an erasure waits for sends of the person a provider is being handed right now.
SETTLE_SECONDS = 5.0
_SETTLE_PAUSE = 0.02


@dataclass(frozen=True)
class Upserted:
    """A PUT's outcome: whether it created the subscriber, and the view once processed
    (None when the event is stored but processing has not caught up yet)."""

    created: bool
    view: dict[str, Any] | None


def email_of(text: str) -> str:
    """A subscriber key from user input (trimmed, lower-cased), or a 422 naming `email`."""
    try:
        return normalise_email(text)
    except ValueError as error:
        body = {"error": "invalid_email", "field": "email", "message": str(error)}
        raise RequestError(422, body) from None


def internal_event_id(kind: str, clock: Clock) -> str:
    """A fresh id for an event the API stores on a caller's behalf (PUT, DELETE, trigger)."""
    return f"pw-{kind}:{new_id(clock.now())}"


def upsert_event(
    event_id: str, email: str, fields: dict[str, Any] | None, groups: list[str] | None
) -> IncomingEvent:
    """The event that upserts a subscriber exactly as any received event would."""
    return _own_event(event_id, UPSERT_EVENT, email, fields, groups)


def _own_event(
    event_id: str,
    kind: str,
    email: str,
    fields: dict[str, Any] | None = None,
    groups: list[str] | None = None,
) -> IncomingEvent:
    """An event the API stores on a caller's behalf."""
    body = {"type": kind, "email": email, "fields": fields, "groups": groups}
    return IncomingEvent(
        id=event_id,
        type=kind,
        email=email,
        fields=fields,
        groups=groups,
        data={},
        occurred_at=None,
        body_hash=body_hash(body),
    )


class SubscriberOps:
    """The subscribers API over one store, its engine worker and clock."""

    def __init__(self, store: Store, worker: Worker, clock: Clock) -> None:
        self.store = store
        self.worker = worker
        self.clock = clock

    async def caught_up(self) -> None:
        """Catch up with every event received so far, or answer 503 (retry shortly)."""
        try:
            await self.worker.catch_up()
        except NotCaughtUp as late:
            body = {"error": "not_caught_up", "message": f"{late}; retry shortly"}
            raise RequestError(503, body) from None

    async def upsert(
        self, email: str, fields: dict[str, Any] | None, groups: list[str] | None
    ) -> Upserted:
        """Store the upsert as an event, then show the subscriber it made or changed."""
        existed = await self.store.read(lambda tx: _live(tx, email) is not None)
        event = upsert_event(internal_event_id("put", self.clock), email, fields, groups)
        await self.store.ingest([event])
        self.worker.wake()
        try:
            await self.worker.catch_up()
        except (NotCaughtUp, StoreUnavailable):  # stored: it will be processed later
            return Upserted(not existed, None)
        return Upserted(not existed, await self._view(email, MESSAGES_SHOWN))

    async def show(self, email: str, messages: int = MESSAGES_SHOWN) -> dict[str, Any]:
        """Fields, groups, suppression and its lifts, pending sends, recent messages."""
        await self.caught_up()
        return await self._view(email, messages)

    async def page(self, query: SubscriberQuery) -> tuple[list[dict[str, Any]], str | None]:
        """One page of live subscribers and the cursor of the next (None after the last)."""
        await self.caught_up()
        ask = SubscriberQuery(
            query.after_id, query.limit + 1, query.suppressed, query.reason, query.group
        )
        found = await self.store.read(lambda tx: tx.list_subscribers(ask))
        shown = found[: query.limit]
        last = shown[-1].id if len(found) > query.limit else None
        return [subscriber_payload(person) for person in shown], (
            None if last is None else cursor_of(last)
        )

    async def unsuppress(self, email: str, by: str, note: str | None) -> dict[str, Any]:
        """Lift a hard-bounce or complaint suppression, recording who and why."""
        await self.caught_up()
        now = self.clock.now()
        result = await self.store.write(lambda tx: suppression.lift(tx, email, by, note, now))
        outcome = result.outcome
        if outcome is suppression.LiftOutcome.UNKNOWN:
            raise RequestError(404, unknown(email))
        if outcome is suppression.LiftOutcome.UNSUBSCRIBED:
            message = (
                f"{email} unsubscribed: only their own subscriber.resubscribed event lifts that"
            )
            raise RequestError(409, {"error": "unsubscribed", "message": message})
        view = await self._view(email, MESSAGES_SHOWN)
        lifted = None if result.lift is None else lift_payload(result.lift)
        return {"lifted": lifted, "subscriber": view}

    async def erase(self, email: str) -> dict[str, Any]:
        """Delete the person (fields, groups, pending sends) and scrub every copy of the
        address and of their rendered emails, keeping every count."""
        if not await self.store.read(lambda tx: erasure.erasable(tx, email)):
            raise RequestError(404, unknown(email))
        event_id = internal_event_id("delete", self.clock)
        deleted = _own_event(event_id, DELETE_EVENT, email)
        await self.store.ingest([deleted])
        stored = await self.store.read(lambda tx: tx.event_by_id(event_id))
        assert stored is not None  # just stored, far within the id retention
        await self.caught_up()
        await self._settle(email)
        catalog = await self.worker.catalog()
        now = self.clock.now()
        done = await self.store.write(lambda tx: erasure.erase(tx, catalog, email, stored.seq, now))
        if done is None:  # another request erased it meanwhile
            raise RequestError(404, unknown(email))
        if not await self.store.drop_old_copies():
            log.warning("erasure: the write-ahead log could not be truncated now (busy readers)")
        return {
            "email": email,
            "erased": True,
            "erased_at": iso(now),
            "subscribers": done.subscribers,
            "scrubbed": {"events": done.events, "sends": done.sends, "messages": done.messages},
            "in_flight_cancelled": done.in_flight_cancelled,
        }

    async def _settle(self, email: str) -> None:
        """Wait (bounded) until no send of the person is being handed to a provider."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_SECONDS
        while loop.time() < deadline:
            if not await self.store.read(lambda tx: _claimed(tx, email)):
                return
            await asyncio.sleep(_SETTLE_PAUSE)

    async def _view(self, email: str, messages: int) -> dict[str, Any]:
        def read(tx: ReadTx) -> dict[str, Any]:
            person = _live(tx, email)
            if person is None or person.id is None:
                raise RequestError(404, unknown(email))
            sent = tx.subscriber_messages([person.id], messages)
            view = subscriber_payload(person)
            view["lifted_suppressions"] = [
                lift_payload(lift) for lift in tx.suppression_lifts(person.id)
            ]
            view["pending"] = [send_payload(send) for send in tx.active_sends(person.id)]
            view["messages"] = [message_summary(m, tx.message_events(m.id)) for m in sent]
            return view

        return await self.store.read(read)


def _live(tx: ReadTx, email: str) -> Subscriber | None:
    person = tx.subscriber(email)
    return person if person is not None and person.deleted_at is None else None


def _claimed(tx: ReadTx, email: str) -> bool:
    ids = [person.id for person in erasure.incarnations(tx, email) if person.id is not None]
    return any(send.status is SendStatus.CLAIMED for send in tx.subscriber_sends(ids))


def unknown(email: str) -> dict[str, Any]:
    """The 404 answer for an address with no (live) subscriber."""
    return {"error": "unknown_subscriber", "message": f"no subscriber {email}"}
