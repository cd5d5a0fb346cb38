"""The in-flight mark's text: encoded with each batch list once, yet the very text the store
would write for the mark's value (a repeated request must be read back exactly)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from runner.engine.inflight import InFlight, _encoded
from runner.providers.base import OutgoingMessage
from runner.store.claims import JsonText
from runner.store.rows import dumps

SINCE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def mark(send_id: str, batch: tuple[str, ...] = ()) -> InFlight:
    message = OutgoingMessage(
        send_id=send_id,
        message_id=send_id,
        to="zoë@example.com",
        from_="Shop <shop@example.com>",
        reply_to=None,
        subject='Hi "there" ✓',
        html="<p>é</p>",
        text="é\n",
        headers={"Z-Last": "1", "A-First": "2"},
        tags=["welcome"],
    )
    return InFlight("default", "resend", SINCE, 3, message, batch)


def test_encoded_is_the_stores_text_of_the_dump() -> None:
    for one in (mark("s1"), mark("s1", ("s1", "s2")), mark("s1", ("s1", "s2")).carry()):
        text = one.encoded()
        assert isinstance(text, JsonText)
        assert text == dumps(one.dump())
        assert one.encoded(dumps(list(one.batch))) == text


def test_marks_of_a_batch_share_one_encoding_of_its_list() -> None:
    batch = ("s1", "s2", "s3")
    marks = {send_id: mark(send_id, batch) for send_id in batch}
    values = _encoded([marks, {"alone": mark("alone")}])
    assert set(values) == {"s1", "s2", "s3", "alone"}
    for key, text in values.items():
        assert text == dumps((marks.get(key) or mark("alone")).dump())
        assert json.loads(text)["message"]["headers"] == [["Z-Last", "1"], ["A-First", "2"]]
