"""Recording the outcomes of a round's requests together (runner.engine.recording): the
requests answered while a write runs share the next one, and should the joint record of
the accepted sends fail, each is recorded alone, a broken one undone without the others."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runner.core.records import SendStatus
from runner.engine import recording
from runner.engine.outcomes import sent, sent_all
from runner.providers.base import OutgoingMessage, SendResult
from runner.store.base import WriteTx
from tests.test_sender import T0, Scripted, World, db, scenario, source

__all__ = ["db"]  # the fixture, imported for pytest


class Concurrent(Scripted):
    """Answers every request once all `width` requests of a wave have arrived."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.arrived = 0
        self.all_in = asyncio.Event()

    async def send(self, message: OutgoingMessage) -> SendResult:
        self.sent.append(message)
        self.arrived += 1
        if self.arrived >= self.width:
            self.all_in.set()
        await self.all_in.wait()
        return SendResult(f"p-{message.message_id}")


def test_requests_answered_together_share_one_write_of_their_outcomes(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[int] = []
    joint = sent_all

    def counting(tx: WriteTx, scope: Any, accepted: Any, **values: Any) -> Any:
        writes.append(len(accepted))
        return joint(tx, scope, accepted, **values)

    monkeypatch.setattr(recording, "sent_all", counting)

    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"))
        for index in range(4):
            person = await w.subscriber(f"p{index}@shop.test")
            await w.pending("welcome", person, T0)
        provider = Concurrent(4)
        assert await w.run(T0, provider, concurrency=4) == 4
        assert len(provider.sent) == 4
        assert {s.status for s in await w.sends("welcome")} == {SendStatus.SENT}
        assert len(await w.messages()) == 4
        assert [e.type for e in await w.internal_events()] == ["email.sent"] * 4
        # The first answer starts a write; the three answered meanwhile share the next.
        assert sum(writes) == 4 and len(writes) < 4

    scenario(db, body)


def test_a_send_whose_record_fails_is_undone_alone(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **values: Any) -> Any:
        raise RuntimeError("joint record broken")

    alone = sent

    def one(tx: WriteTx, scope: Any, attempt: Any, result: Any, **values: Any) -> Any:
        if attempt.ready.send.id == "send-002":
            raise RuntimeError("this send's record is broken")
        return alone(tx, scope, attempt, result, **values)

    monkeypatch.setattr(recording, "sent_all", broken)
    monkeypatch.setattr(recording, "sent", one)

    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"))
        for index in range(3):
            person = await w.subscriber(f"p{index}@shop.test")
            await w.pending("welcome", person, T0)
        provider = Concurrent(3)
        assert await w.run(T0, provider, concurrency=3) == 3
        got = {s.id: s.status for s in await w.sends("welcome")}
        assert got == {
            "send-001": SendStatus.SENT,
            "send-002": SendStatus.CLAIMED,  # still marked in flight: settled after its lease
            "send-003": SendStatus.SENT,
        }
        assert sorted(m.pending_send_id for m in await w.messages()) == ["send-001", "send-003"]

    scenario(db, body)


def test_a_write_cancelled_at_shutdown_leaves_no_request_waiting() -> None:
    class Stuck:
        """A store whose write never ends (the worker is being stopped meanwhile)."""

        started = asyncio.Event()

        async def write(self, work: Any) -> Any:
            self.started.set()
            await asyncio.Event().wait()

    async def body() -> None:
        recorder = recording.Recorder(Stuck(), Any, lambda stored: None)  # type: ignore[arg-type]
        first = asyncio.create_task(recorder.record([], [lambda tx: None], False))
        await Stuck.started.wait()
        second = asyncio.create_task(recorder.record([], [lambda tx: None], False))
        await asyncio.sleep(0)
        flusher = recorder._flusher
        assert flusher is not None
        flusher.cancel()
        for waiting in (first, second):
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(waiting, 5)

    asyncio.run(body())
