"""Erasing a person (`DELETE /v1/subscribers/{email}`): once their `subscriber.deleted` event
has been processed (fields and groups gone, hashed tombstone, pending sends cancelled), every
stored copy of the address and of what was rendered for them is scrubbed, while every count
stays: events, sends, messages and provider events keep their rows, statuses and reasons.

Every earlier incarnation of the address (deleted before, never scrubbed) is erased too: a
request to forget an address must leave no copy of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import quote, quote_plus

from runner.core.records import (
    CancelReason,
    Message,
    PendingSend,
    SendStatus,
    StoredEvent,
    Subscriber,
)
from runner.engine.catalog import Catalog
from runner.engine.subscribers import TOMBSTONE_PREFIX, tombstone
from runner.store.base import ReadTx, WriteTx

ERASED_SUBJECT = "(erased)"
_ERASED_ID = "erased:"
_TEMPLATE_MARKS = ("{{", "{%", "{#")


@dataclass(frozen=True)
class Erasure:
    """What one erasure scrubbed, counted."""

    subscribers: int
    events: int
    sends: int
    messages: int
    in_flight_cancelled: int  # sends a provider was being handed when the erasure ran


def erased(message: Message) -> bool:
    """Whether the recipient of a message was erased."""
    return message.to.startswith(TOMBSTONE_PREFIX)


def mentions(text: str | None, email: str) -> bool:
    """Whether `text` holds the address as written, percent-encoded or form-encoded."""
    if not text:
        return False
    lowered = text.lower()
    forms = {email, quote(email, safe="").lower(), quote_plus(email, safe="").lower()}
    return any(form in lowered for form in forms)


def incarnations(tx: ReadTx, email: str) -> list[Subscriber]:
    """The deleted subscribers of this address whose traces were not scrubbed yet."""
    found = tx.subscribers_by_prefix(tombstone(email) + ":")
    return [person for person in found if person.erased_at is None]


def erasable(tx: ReadTx, email: str) -> bool:
    """Whether there is anything of this address to erase (a live subscriber, or a deleted
    one not scrubbed yet)."""
    live = tx.subscriber(email)
    return (live is not None and live.deleted_at is None) or bool(incarnations(tx, email))


def erase(tx: WriteTx, catalog: Catalog, email: str, through: int, now: datetime) -> Erasure | None:
    """Scrub every deleted, unscrubbed incarnation of `email` (None when there is none).

    `through` is the seq of the `subscriber.deleted` event, processed already: events up to
    it are this address's past; later client events belong to someone signing up again.
    """
    tx.lock_engine()  # no event of this address is half-processed meanwhile
    people = incarnations(tx, email)
    if not people:
        return None
    by_id = {person.id: person for person in people if person.id is not None}
    in_flight = _cancel_claims(tx, by_id, now)
    messages = tx.subscriber_messages(list(by_id))
    message_ids = {message.id for message in messages}
    hashed = tombstone(email)
    events = [
        _scrubbed_event(event, hashed, email)
        for event in tx.events_of(email)
        if _belongs(event, through, message_ids)
    ]
    tx.rewrite_events(events)
    sends = [_scrubbed_send(send, by_id[send.subscriber_id], email) for send in _sends(tx, by_id)]
    tx.rewrite_sends(sends)
    tx.rewrite_messages(
        [_scrubbed_message(m, by_id[m.subscriber_id], email, catalog) for m in messages]
    )
    for message in messages:
        clicked = [e for e in tx.message_events(message.id) if mentions(e.url, email)]
        tx.rewrite_message_events([replace(e, url=None) for e in clicked])
    tx.clear_lift_notes(list(by_id))
    for person in people:
        tx.save_subscriber(
            replace(person, fields={}, groups=set(), suppressed_source=None, erased_at=now)
        )
    return Erasure(len(people), len(events), len(sends), len(messages), in_flight)


def _cancel_claims(tx: WriteTx, people: Collection[int], now: datetime) -> int:
    """Sends being handed to a provider right now: cancelled, so their lease is lost and the
    sender records no message with the address after the scrub (the caller waited first)."""
    claimed = [s.id for s in _sends(tx, people) if s.status is SendStatus.CLAIMED]
    if not claimed:
        return 0
    return tx.set_status(
        claimed,
        SendStatus.CANCELLED,
        now,
        from_statuses={SendStatus.CLAIMED},
        reason=CancelReason.DELETED_SUBSCRIBER.value,
    )


def _sends(tx: ReadTx, people: Collection[int]) -> list[PendingSend]:
    return tx.subscriber_sends(list(people))


def _belongs(event: StoredEvent, through: int, message_ids: set[str]) -> bool:
    if event.seq <= through:
        return True
    if event.derived_from is not None:
        return event.derived_from <= through
    # An internal event about one of the erased messages (a late provider report).
    return event.id is None and event.data.get("message_id") in message_ids


def _scrubbed_event(event: StoredEvent, hashed: str, email: str) -> StoredEvent:
    client_id = event.id
    if client_id is not None and mentions(client_id, email):
        client_id = _ERASED_ID + hashlib.sha256(client_id.encode("utf-8")).hexdigest()
    return replace(event, id=client_id, email=hashed, fields=None, groups=None, data={})


def _scrubbed_send(send: PendingSend, person: Subscriber, email: str) -> PendingSend:
    # The event name says which trigger it was; its data and the api overrides are the
    # person's.
    trigger = {"name": send.trigger_event.get("name")}
    error = None if mentions(send.last_error, email) else send.last_error
    return replace(send, email=person.email, trigger_event=trigger, overrides={}, last_error=error)


def _scrubbed_message(
    message: Message, person: Subscriber, email: str, catalog: Catalog
) -> Message:
    headers = {name: value for name, value in message.headers.items() if not mentions(value, email)}
    subject = message.subject if _static_subject(message, catalog, email) else ERASED_SUBJECT
    return replace(message, to=person.email, subject=subject, html=None, text=None, headers=headers)


def _static_subject(message: Message, catalog: Catalog, email: str) -> bool:
    """A subject kept as it is: the automation's subject text verbatim, with no template
    syntax, so nothing in it came from the person."""
    live = catalog.by_id.get(message.automation_id)
    if live is None or mentions(message.subject, email):
        return False
    written = live.model.email.subject
    return message.subject == written and not any(mark in written for mark in _TEMPLATE_MARKS)
