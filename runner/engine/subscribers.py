"""Applying one received event to a subscriber (docs/events.md); pure: no store, no clock.

`apply_event` returns the subscriber after the event, the derived events it causes, in the
order the engine processes them (before the event itself), and whether the event itself then
goes on to exits and triggers.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from typing import Any

from runner.core.records import StoredEvent, Subscriber
from runner.engine import suppression

ADDED = "subscriber.added"
UPDATED = "subscriber.updated"
JOINED = "group.joined"
LEFT = "group.left"
UNSUBSCRIBED = "subscriber.unsubscribed"
RESUBSCRIBED = "subscriber.resubscribed"
DELETED = "subscriber.deleted"
TOMBSTONE_PREFIX = "deleted:"

# Lifecycle events the runner derives itself. A client may post them too: such an event only
# upserts the subscriber, and the derived event (emitted when the subscriber is new, or when
# something really changed) is the one that triggers, so neither ever fires twice. Its `data`
# reaches those derived events, so `where` on `event.data.source` tells sign-up paths apart.
SELF_DERIVED = frozenset({ADDED, UPDATED})

# Deliberately loose (one @, no spaces, a dot-free domain allowed): deliverability is the
# provider's business; this only refuses what can never be an address.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_MAX_EMAIL = 320

Derived = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Update:
    """The subscriber after an event and the derived events, in processing order.

    `fires`: whether the event itself then runs exits and triggers (False for a client
    lifecycle event, which its derived events stand for, and for an explicit group join or
    leave that created the subscriber: joining at creation is not a join).
    """

    subscriber: Subscriber
    derived: list[Derived]
    created: bool
    fires: bool = True


def normalise_email(email: str) -> str:
    """`email` trimmed and lower-cased; ValueError when empty or not an address."""
    normal = email.strip().lower()
    if not normal or len(normal) > _MAX_EMAIL or _EMAIL.match(normal) is None:
        raise ValueError(f"{email!r} is not an email address")
    return normal


def tombstone(email: str, subscriber_id: int | None = None) -> str:
    """The hashed email a deleted subscriber keeps: it no longer matches the address, and the
    id suffix keeps emails unique when the same address is deleted twice."""
    digest = TOMBSTONE_PREFIX + hashlib.sha256(email.encode("utf-8")).hexdigest()
    return digest if subscriber_id is None else f"{digest}:{subscriber_id}"


def apply_event(existing: Subscriber | None, event: StoredEvent) -> Update:
    """The subscriber after `event` (never mutating `existing`) and its derived events.

    A deleted `existing` counts as unknown: the event creates a new subscriber.
    """
    email = normalise_email(event.email)
    created = existing is None or existing.deleted_at is not None
    if created:
        base = Subscriber(id=None, email=email, created_at=event.received_at)
    else:
        assert existing is not None
        base = replace(existing, fields=dict(existing.fields), groups=set(existing.groups))

    if event.type == DELETED:
        gone = replace(
            base,
            email=tombstone(email, base.id),
            fields={},
            groups=set(),
            deleted_at=event.received_at,
        )
        return Update(gone, [], created=False)

    # Only a client lifecycle event passes its data on; the runner's keys win over the client's.
    passed = dict(event.data) if event.type in SELF_DERIVED else {}
    derived: list[Derived] = []
    if created:
        derived.append((ADDED, passed))

    changed, previous = _merge_fields(base.fields, event.fields)
    old_groups = set(base.groups)
    if event.groups is not None:
        base.groups = {str(group) for group in event.groups}
    explicit = _explicit_group(event)
    if explicit is not None:
        if event.type == JOINED:
            base.groups.add(explicit)
        else:
            base.groups.discard(explicit)

    if not created:
        joined = base.groups - old_groups
        left = old_groups - base.groups
        if explicit is not None:  # the event itself is that join or leave
            joined.discard(explicit)
            left.discard(explicit)
        derived.extend((JOINED, {"group": group}) for group in sorted(joined))
        derived.extend((LEFT, {"group": group}) for group in sorted(left))
        if changed:
            derived.append((UPDATED, {**passed, "changed": changed, "previous": previous}))

    if event.type == UNSUBSCRIBED and base.suppressed is None:
        base.suppressed = "unsubscribed"
        base.suppressed_at = event.received_at
        base.suppressed_source = suppression.from_event(event)
    elif event.type == RESUBSCRIBED and base.suppressed == "unsubscribed":
        base.suppressed = None
        base.suppressed_at = None
        base.suppressed_source = None
    fires = event.type not in SELF_DERIVED and not (created and event.type in (JOINED, LEFT))
    return Update(base, derived, created, fires)


def _merge_fields(
    fields: dict[str, Any], incoming: dict[str, Any] | None
) -> tuple[list[str], dict[str, Any]]:
    """Merge `incoming` into `fields` in place; the changed names (sorted) and old values."""
    if not incoming:
        return [], {}
    previous: dict[str, Any] = {}
    for name, value in incoming.items():
        present = name in fields
        old = fields.get(name)
        if value is None:
            if present:
                previous[name] = old
                del fields[name]
        elif not present or not _same(old, value):
            previous[name] = old
            fields[name] = value
    changed = sorted(previous)
    return changed, {name: previous[name] for name in changed}


def _same(left: Any, right: Any) -> bool:
    # 1 == True and 1 == 1.0 in Python, but a field going from 1 to true did change.
    return type(left) is type(right) and bool(left == right)


def _explicit_group(event: StoredEvent) -> str | None:
    if event.type not in (JOINED, LEFT):
        return None
    group = event.data.get("group")
    return group if isinstance(group, str) and group else None
