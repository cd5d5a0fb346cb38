"""JSON forms of subscribers, their suppressions, lifts and messages, and the opaque cursor
of the subscriber list (docs/subscribers.md)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from runner.core.records import Message, MessageEvent, Subscriber, SuppressionLift
from runner.engine.erasure import erased
from runner.server.api.base import iso
from runner.server.api.models import RequestError

_CURSOR_VERSION = 1


def subscriber_payload(person: Subscriber) -> dict[str, Any]:
    """A subscriber as listed: email, fields, groups and suppression."""
    return {
        "email": person.email,
        "created_at": iso(person.created_at),
        "fields": person.fields,
        "groups": sorted(person.groups),
        "suppression": suppression_payload(person),
    }


def suppression_payload(person: Subscriber) -> dict[str, Any] | None:
    """Why, since when and by what a subscriber is suppressed (None when not)."""
    if person.suppressed is None:
        return None
    return {
        "reason": person.suppressed,
        "at": iso(person.suppressed_at),
        "source": person.suppressed_source,
    }


def lift_payload(lift: SuppressionLift) -> dict[str, Any]:
    """A suppression lifted through the API."""
    return {
        "reason": lift.reason,
        "suppressed_at": iso(lift.suppressed_at),
        "source": lift.source,
        "lifted_at": iso(lift.lifted_at),
        "by": lift.lifted_by,
        "note": lift.note,
    }


def message_summary(message: Message, events: list[MessageEvent]) -> dict[str, Any]:
    """A message to one subscriber with its provider events (bodies: see the outbox)."""
    return {
        "id": message.id,
        "automation": message.automation_id,
        "subject": message.subject,
        "sent_at": iso(message.sent_at),
        "status": message.status,
        "provider": message.provider,
        "provider_message_id": message.provider_message_id,
        "erased": erased(message),
        "events": [
            {
                "id": event.provider_event_id,
                "type": event.type,
                "occurred_at": iso(event.occurred_at),
                "received_at": iso(event.received_at),
                "url": event.url,
                "bounce": event.bounce,
            }
            for event in events
        ],
    }


def cursor_of(last_id: int) -> str:
    """The opaque cursor of the page after the subscriber `last_id`."""
    text = json.dumps({"v": _CURSOR_VERSION, "after": last_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def after_cursor(cursor: str) -> int:
    """The subscriber id a cursor continues after, or a 422 naming `cursor`."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        after = value["after"] if value.get("v") == _CURSOR_VERSION else None
    except (ValueError, UnicodeError, binascii.Error, AttributeError, KeyError, TypeError):
        after = None
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        message = "not a cursor this API gave out (use next_cursor as it is)"
        raise RequestError(422, {"error": "invalid_query", "field": "cursor", "message": message})
    return after
