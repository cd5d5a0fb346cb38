"""Applying events to subscribers (docs/events.md): merge rules and derived events."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from runner.core.records import StoredEvent, Subscriber
from runner.engine.subscribers import apply_event, normalise_email, tombstone

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
T1 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def event(
    type: str = "purchase",
    email: str = "Ann@Example.com",
    fields: dict[str, Any] | None = None,
    groups: list[str] | None = None,
    data: dict[str, Any] | None = None,
    at: datetime = T0,
) -> StoredEvent:
    return StoredEvent(
        seq=1,
        id="e1",
        type=type,
        email=email,
        fields=fields,
        groups=groups,
        data=data or {},
        occurred_at=None,
        received_at=at,
    )


def known(**kwargs: Any) -> Subscriber:
    values: dict[str, Any] = {"id": 7, "email": "ann@example.com", "created_at": T0}
    values.update(kwargs)
    return Subscriber(**values)


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("  Ann@Example.COM ", "ann@example.com"),
        ("b@c", "b@c"),
        ("X+tag@Mail.Example", "x+tag@mail.example"),
    ],
)
def test_normalise_trims_and_lowercases(raw: str, normal: str) -> None:
    assert normalise_email(raw) == normal


@pytest.mark.parametrize(
    "raw", ["", "   ", "no-at-sign", "two@@example.com", "a b@example.com", "@x", "x@"]
)
def test_normalise_rejects_non_addresses(raw: str) -> None:
    with pytest.raises(ValueError, match="not an email address"):
        normalise_email(raw)


def test_first_event_creates_subscriber_with_added_first_and_no_joins() -> None:
    update = apply_event(None, event(fields={"name": "Ann"}, groups=["vip", "news"]))
    assert update.created
    assert update.subscriber.id is None
    assert update.subscriber.email == "ann@example.com"
    assert update.subscriber.fields == {"name": "Ann"}
    assert update.subscriber.groups == {"vip", "news"}
    assert update.subscriber.created_at == T0
    assert update.derived == [("subscriber.added", {})]


def test_explicit_subscriber_added_passes_its_data_to_the_derived_event() -> None:
    update = apply_event(None, event("subscriber.added", data={"source": "admin"}))
    assert update.derived == [("subscriber.added", {"source": "admin"})]


def test_fields_merge_key_by_key_and_null_removes() -> None:
    before = known(fields={"name": "Ann", "plan": "free", "city": "Seoul"})
    update = apply_event(before, event(fields={"plan": "pro", "city": None, "age": 30}))
    assert not update.created
    assert update.subscriber.fields == {"name": "Ann", "plan": "pro", "age": 30}
    assert update.derived == [
        (
            "subscriber.updated",
            {
                "changed": ["age", "city", "plan"],
                "previous": {"age": None, "city": "Seoul", "plan": "free"},
            },
        )
    ]
    assert before.fields == {"name": "Ann", "plan": "free", "city": "Seoul"}, "input not mutated"


def test_unchanged_fields_produce_no_update_event() -> None:
    before = known(fields={"plan": "pro", "n": 1})
    update = apply_event(before, event(fields={"plan": "pro", "gone": None}))
    assert update.derived == []
    assert update.subscriber.fields == {"plan": "pro", "n": 1}


def test_a_type_change_is_a_change() -> None:
    update = apply_event(known(fields={"n": 1}), event(fields={"n": True}))
    assert update.derived == [("subscriber.updated", {"changed": ["n"], "previous": {"n": 1}})]


def test_groups_replace_the_set_with_joins_then_leaves_sorted() -> None:
    before = known(groups={"a", "b", "c"})
    update = apply_event(before, event(groups=["c", "z", "d"]))
    assert update.subscriber.groups == {"c", "d", "z"}
    assert update.derived == [
        ("group.joined", {"group": "d"}),
        ("group.joined", {"group": "z"}),
        ("group.left", {"group": "a"}),
        ("group.left", {"group": "b"}),
    ]


def test_absent_groups_keep_the_set() -> None:
    update = apply_event(known(groups={"a"}), event(groups=None))
    assert update.subscriber.groups == {"a"}
    assert update.derived == []


def test_derived_order_groups_before_updated() -> None:
    update = apply_event(known(groups={"a"}, fields={"x": 1}), event(groups=[], fields={"x": 2}))
    assert [name for name, _ in update.derived] == ["group.left", "subscriber.updated"]


def test_explicit_group_events_change_membership_without_duplicate_derived() -> None:
    joined = apply_event(known(groups={"a"}), event("group.joined", data={"group": "vip"}))
    assert joined.subscriber.groups == {"a", "vip"}
    assert joined.derived == []
    left = apply_event(known(groups={"a", "vip"}), event("group.left", data={"group": "vip"}))
    assert left.subscriber.groups == {"a"}
    assert left.derived == []


def test_explicit_join_with_replacing_groups_derives_the_other_changes() -> None:
    update = apply_event(
        known(groups={"a"}), event("group.joined", groups=["b"], data={"group": "vip"})
    )
    assert update.subscriber.groups == {"b", "vip"}
    assert update.derived == [("group.joined", {"group": "b"}), ("group.left", {"group": "a"})]


def test_unsubscribe_suppresses_and_only_resubscribe_lifts() -> None:
    off = apply_event(known(), event("subscriber.unsubscribed", at=T0)).subscriber
    assert off.suppressed == "unsubscribed"
    assert off.suppressed_at == T0
    still = apply_event(off, event("purchase", at=T1)).subscriber
    assert still.suppressed == "unsubscribed"
    back = apply_event(still, event("subscriber.resubscribed", at=T1)).subscriber
    assert back.suppressed is None
    assert back.suppressed_at is None


def test_resubscribe_does_not_lift_a_bounce() -> None:
    bounced = known(suppressed="bounced", suppressed_at=T0)
    update = apply_event(bounced, event("subscriber.resubscribed", at=T1))
    assert update.subscriber.suppressed == "bounced"
    also = apply_event(bounced, event("subscriber.unsubscribed", at=T1))
    assert also.subscriber.suppressed == "bounced", "unsubscribing keeps the stronger reason"


def test_delete_erases_and_leaves_a_hashed_tombstone() -> None:
    before = known(fields={"name": "Ann"}, groups={"vip"})
    update = apply_event(before, event("subscriber.deleted", at=T1))
    gone = update.subscriber
    assert gone.id == 7
    assert gone.fields == {}
    assert gone.groups == set()
    assert gone.deleted_at == T1
    digest = hashlib.sha256(b"ann@example.com").hexdigest()
    assert gone.email == f"deleted:{digest}:7" == tombstone("ann@example.com", 7)
    assert update.derived == []
    assert not update.created


def test_event_after_delete_creates_a_new_subscriber() -> None:
    gone = apply_event(known(fields={"a": 1}), event("subscriber.deleted")).subscriber
    again = apply_event(gone, event(fields={"b": 2}, at=T1))
    assert again.created
    assert again.subscriber.id is None
    assert again.subscriber.email == "ann@example.com"
    assert again.subscriber.fields == {"b": 2}
    assert again.subscriber.deleted_at is None
    assert again.derived == [("subscriber.added", {})]


# --- client lifecycle events and whether the event itself fires ------------------------------


def test_an_ordinary_event_fires_itself() -> None:
    assert apply_event(None, event("purchase")).fires
    assert apply_event(known(), event("purchase")).fires


def test_client_subscriber_added_for_a_known_email_is_only_an_upsert() -> None:
    data = {"source": "import"}
    unchanged = apply_event(known(), event("subscriber.added", data=data))
    assert (unchanged.derived, unchanged.created, unchanged.fires) == ([], False, False)
    changed = apply_event(
        known(fields={"plan": "free"}), event("subscriber.added", fields={"plan": "pro"}, data=data)
    )
    assert changed.derived == [
        (
            "subscriber.updated",
            {"source": "import", "changed": ["plan"], "previous": {"plan": "free"}},
        )
    ]
    assert not changed.fires


def test_client_subscriber_added_for_a_new_email_fires_only_the_derived_added() -> None:
    update = apply_event(None, event("subscriber.added", data={"source": "form"}))
    assert update.created and not update.fires
    assert update.derived == [("subscriber.added", {"source": "form"})]


def test_client_subscriber_updated_for_a_new_email_is_an_addition() -> None:
    update = apply_event(
        None, event("subscriber.updated", fields={"plan": "pro"}, data={"source": "crm"})
    )
    assert update.created and not update.fires
    assert update.derived == [("subscriber.added", {"source": "crm"})]


def test_client_subscriber_updated_passes_its_data_under_the_runners_keys() -> None:
    data = {"source": "crm", "changed": ["forged"], "previous": {}}
    update = apply_event(
        known(fields={"plan": "free"}),
        event("subscriber.updated", fields={"plan": "pro"}, data=data),
    )
    assert update.derived == [
        ("subscriber.updated", {"source": "crm", "changed": ["plan"], "previous": {"plan": "free"}})
    ]
    assert not update.fires
    nothing = apply_event(known(fields={"plan": "pro"}), event("subscriber.updated", data=data))
    assert (nothing.derived, nothing.fires) == ([], False)


def test_derived_updated_of_an_ordinary_event_carries_no_client_data() -> None:
    update = apply_event(known(), event("profile", fields={"a": 1}, data={"source": "x"}))
    assert update.derived == [("subscriber.updated", {"changed": ["a"], "previous": {"a": None}})]


@pytest.mark.parametrize("kind", ["group.joined", "group.left"])
def test_explicit_group_event_creating_the_subscriber_does_not_fire(kind: str) -> None:
    update = apply_event(None, event(kind, data={"group": "vip"}))
    assert update.created and not update.fires
    assert update.derived == [("subscriber.added", {})]
    assert update.subscriber.groups == ({"vip"} if kind == "group.joined" else set())


def test_explicit_group_event_of_a_known_subscriber_fires() -> None:
    assert apply_event(known(), event("group.joined", data={"group": "vip"})).fires
    assert apply_event(known(groups={"vip"}), event("group.left", data={"group": "vip"})).fires


def test_explicit_join_after_a_delete_counts_as_creation() -> None:
    gone = apply_event(known(), event("subscriber.deleted")).subscriber
    again = apply_event(gone, event("group.joined", data={"group": "vip"}, at=T1))
    assert again.created and not again.fires
