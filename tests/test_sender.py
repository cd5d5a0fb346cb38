"""The send loop against a real SQLite store: the checks just before sending, rendering, providers,
retries, repeats and lease fencing, driven by explicit instants (nothing sleeps)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from runner.core.clock import FakeClock
from runner.core.records import (
    AppliedAutomation,
    HistoryEntry,
    Message,
    PendingSend,
    SendStatus,
    StoredEvent,
    Subscriber,
)
from runner.core.unsubscribe import read_token
from runner.engine.catalog import Catalog
from runner.engine.context import EngineContext
from runner.engine.sender import send_due
from runner.engine.status_changes import REVISION_META
from runner.providers import (
    OutgoingMessage,
    Provider,
    ProviderError,
    Providers,
    SendResult,
    retry,
)
from runner.providers.outbox import OutboxProvider
from runner.store import open_store
from runner.store.base import ReadTx, Store, WriteTx
from runner.templating.render import EmailJob
from runner.templating.renderpool import RenderPool

T = TypeVar("T")
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
KEY = b"unsubscribe-key-for-tests-000000"
CTX = EngineContext("UTC", "https://mail.shop.test", KEY, max_attempts=3)
EMAIL = """\
email:
  from: "Shop <news@shop.test>"
  subject: "Hi {{ subscriber.fields.name | default('there') }}"
  html: "<p>{{ event.data.coupon | default('none') }}</p>"
"""


def source(automation_id: str, extra: str = "", trigger: str = "{type: api}") -> str:
    return f"id: {automation_id}\nstatus: running\ntrigger: {trigger}\n{extra}{EMAIL}"


class Scripted:
    """A provider answering from a script: a SendResult id, a ProviderError, or a callable."""

    type = "scripted"
    idempotent = False
    max_batch = 1

    def __init__(self, *answers: Any, reports_delivery: bool = True) -> None:
        self.name = "default"
        self.reports_delivery = reports_delivery
        self.answers = list(answers)
        self.sent: list[OutgoingMessage] = []

    async def send(self, message: OutgoingMessage) -> SendResult:
        self.sent.append(message)
        answer = self.answers.pop(0) if self.answers else "ok"
        if callable(answer):
            answer = await answer(message)
        if isinstance(answer, ProviderError):
            raise answer
        return SendResult(f"p-{message.message_id}")

    async def send_batch(self, messages: list[OutgoingMessage]) -> list[SendResult | ProviderError]:
        raise AssertionError("max_batch is 1: never called")


class World:
    """A store with automations, subscribers and sends, and the catalog built from it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.catalog = Catalog()
        self.count = 0

    async def write(self, work: Callable[[WriteTx], T]) -> T:
        return await self.store.write(work)

    async def automation(self, automation_id: str, text: str, **statuses: Any) -> None:
        """Apply `text`; `moments` maps instants to effective statuses (default running at T0)."""
        moments: list[tuple[datetime, str]] = statuses.get("moments", [(T0 - DAY, "running")])
        row = AppliedAutomation(
            automation_id,
            statuses.get("revision", 1),
            "running",
            text,
            statuses.get("templates", {}),
            f"automations/{automation_id}.yaml",
            None,
            T0 - DAY,
            T0 - DAY,
            None,
        )

        def work(tx: WriteTx) -> None:
            tx.save_automation(row)
            for at, value in moments:
                tx.add_history(HistoryEntry(automation_id, at, "status", None, value))

        await self.write(work)
        await self.reload()

    async def reload(self) -> None:
        self.catalog = await self.store.read(
            lambda tx: Catalog.build(
                tx.automations(), tx.status_changes(), revision=tx.meta(REVISION_META) or ""
            )
        )

    async def subscriber(self, email: str = "ann@shop.test", **values: Any) -> Subscriber:
        person = Subscriber(None, email, values.pop("fields", {"name": "Ann"}), **values)
        return await self.write(lambda tx: tx.save_subscriber(person))

    async def pending(
        self, automation_id: str, person: Subscriber, due: datetime, **values: Any
    ) -> PendingSend:
        self.count += 1
        send_id = values.pop("id", f"send-{self.count:03d}")
        assert person.id is not None
        send = PendingSend(
            id=send_id,
            automation_id=automation_id,
            subscriber_id=person.id,
            email=person.email,
            due_at=due,
            status=SendStatus.PENDING,
            trigger_at=values.pop("trigger_at", due),
            trigger_event=values.pop("trigger_event", {"name": "api", "data": {"coupon": "C10"}}),
            created_at=T0 - DAY,
            series_id=values.pop("series_id", send_id),
            **values,
        )
        await self.write(lambda tx: tx.insert_pending(send))
        return send

    async def send(self, send_id: str) -> PendingSend:
        found = await self.store.read(lambda tx: tx.pending_send(send_id))
        assert found is not None
        return found

    async def sends(self, automation_id: str) -> list[PendingSend]:
        every = set(SendStatus)
        return await self.store.read(lambda tx: tx.pending_sends(automation_id, every, 1000))

    async def messages(self) -> list[Message]:
        return await self.store.read(lambda tx: tx.messages(100))

    async def internal_events(self) -> list[StoredEvent]:
        """The stored `email.*` events, processed or not (processed at once when nothing
        listens), of everyone a message went to."""

        def read(tx: ReadTx) -> list[StoredEvent]:
            emails = sorted({message.to for message in tx.messages(100)})
            found = [e for email in emails for e in tx.events_of(email) if e.id is None]
            return sorted(found, key=lambda event: event.seq)

        return await self.store.read(read)

    async def run(
        self,
        now: datetime,
        provider: Provider | None = None,
        rng: random.Random | None = None,
        **shared: Any,
    ) -> int:
        """One sender round; `gate` / `limiters` in `shared` are those the providers share,
        the rest passes through to send_due."""
        shares = {key: shared.pop(key) for key in ("gate", "limiters") if key in shared}
        chosen = provider if provider is not None else OutboxProvider("default")
        providers = Providers({"default": chosen}, **shares)
        return await send_due(self.store, self.catalog, CTX, providers, now, rng=rng, **shared)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[str]:
    yield "sqlite:///" + str(tmp_path / "runner.db")


def scenario(db: str, body: Callable[[World], Awaitable[None]]) -> None:
    """Run `body` against a fresh store, closing it afterwards."""

    async def main() -> None:
        store = open_store(db, FakeClock(T0))
        try:
            await body(World(store))
        finally:
            await store.close()

    asyncio.run(main())


# --- the happy path ------------------------------------------------------------------


def test_due_send_goes_out_through_the_outbox(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"), revision=4)
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0)
        await w.pending("welcome", ann, T0 + HOUR)  # not due yet
        assert await w.run(T0) == 1
        [message] = await w.messages()
        assert (message.to, message.subject, message.html) == (
            "ann@shop.test",
            "Hi Ann",
            "<p>C10</p>",
        )
        assert (message.provider, message.provider_type) == ("default", "outbox")
        assert message.provider_message_id == message.id
        assert (message.revision, message.sent_at, message.status) == (4, T0, "sent")
        token = message.headers["List-Unsubscribe"].removeprefix("<https://mail.shop.test/u/")
        assert read_token(KEY, token.rstrip(">")) == (ann.id, message.id)
        assert message.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        first = await w.send("send-001")
        assert (first.status, first.attempts) == (SendStatus.SENT, 1)
        assert (await w.send("send-002")).status == SendStatus.PENDING
        events = await w.internal_events()
        assert [(e.type, e.email, e.received_at) for e in events] == [
            ("email.sent", "ann@shop.test", T0),
            ("email.delivered", "ann@shop.test", T0),  # the outbox reports no deliveries
        ]
        assert events[0].data == {
            "automation": "welcome",
            "message_id": message.id,
            "sent_at": T0.isoformat(),
        }

    scenario(db, body)


def test_provider_receives_a_stable_idempotency_key(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"))
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0, id="s1")
        provider = Scripted(ProviderError("busy", retryable=True), "ok")
        await w.run(T0, provider, random.Random(1))
        await w.run(T0 + DAY, provider)
        keys = [m.idempotency_key for m in provider.sent]
        assert keys == ["postwright-s1", "postwright-s1"]
        # Every attempt carries the same body: the message is named by its send.
        assert provider.sent[0].message_id == provider.sent[1].message_id == "s1"
        [message] = await w.messages()
        assert message.provider_message_id == f"p-{message.id}"
        assert [e.type for e in await w.internal_events()] == ["email.sent"]  # it reports delivery

    scenario(db, body)


def test_listeners_are_the_email_triggers_running_when_sent(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("intro", source("intro"))
        opened = "{type: email, action: opened, automation: intro}"
        await w.automation("coupon", source("coupon", trigger=opened))
        later = [(T0 + HOUR, "running")]
        await w.automation("late", source("late", trigger=opened), moments=later)
        paused = [(T0 - DAY, "running"), (T0 - HOUR, "paused")]
        await w.automation("paused", source("paused", trigger=opened), moments=paused)
        ann = await w.subscriber()
        await w.pending("intro", ann, T0)
        await w.run(T0)
        [message] = await w.messages()
        assert message.listeners == ["coupon"]

    scenario(db, body)


# --- checks just before sending ------------------------------------------------------------------

PAUSE = [(T0 - DAY, "running"), (T0, "paused"), (T0 + 2 * HOUR, "running")]


def test_due_while_paused_is_cancelled_and_stays_cancelled_after_restart(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"), moments=PAUSE)
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0 + HOUR)  # falls due while paused
        await w.pending("welcome", ann, T0 + 3 * HOUR)  # due after the restart
        assert await w.run(T0 + 4 * HOUR) == 2  # claimed only after the restart
        first, second = await w.send("send-001"), await w.send("send-002")
        assert (first.status, first.reason) == (SendStatus.CANCELLED, "paused")
        assert second.status == SendStatus.SENT
        assert await w.run(T0 + 5 * HOUR) == 0
        assert (await w.send("send-001")).status == SendStatus.CANCELLED
        assert len(await w.messages()) == 1

    scenario(db, body)


def test_due_before_pause_but_claimed_while_paused_is_cancelled(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"), moments=PAUSE)
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0 - HOUR)
        await w.run(T0 + HOUR)
        send = await w.send("send-001")
        assert (send.status, send.reason) == (SendStatus.CANCELLED, "paused")

    scenario(db, body)


@pytest.mark.parametrize(
    ("moments", "reason"),
    [
        ([(T0 - DAY, "running"), (T0 - HOUR, "stopped")], "stopped"),
        ([(T0 - DAY, "running"), (T0 - HOUR, "deleted")], "deleted"),
        ([(T0 - DAY, "scheduled")], "not_running"),
        ([(T0 + HOUR, "running")], "not_running"),  # applied after the due time
    ],
)
def test_not_running_cancels_with_the_status_reason(
    db: str, moments: list[tuple[datetime, str]], reason: str
) -> None:
    async def body(w: World) -> None:
        repeat = "repeat: {every: 1d, times: 2}\n"
        await w.automation("welcome", source("welcome", repeat), moments=moments)
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0)
        await w.run(T0 + 2 * HOUR)
        sends = await w.sends("welcome")
        assert (sends[0].status, sends[0].reason) == (SendStatus.CANCELLED, reason)
        series_ends = reason in ("stopped", "deleted")
        assert len(sends) == (1 if series_ends else 2)

    scenario(db, body)


def test_unknown_automation_is_cancelled_deleted(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"))
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0)
        w.catalog = Catalog()
        await w.run(T0)
        assert (await w.send("send-001")).reason == "deleted"

    scenario(db, body)


def test_suppressed_subscriber_is_cancelled_and_the_series_goes_on(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome", "repeat: {every: 1d, times: 1}\n"))
        ann = await w.subscriber(suppressed="unsubscribed", suppressed_at=T0 - DAY)
        await w.pending("welcome", ann, T0, trigger_at=T0)
        await w.run(T0)
        first, repeat = await w.sends("welcome")
        assert (first.status, first.reason) == (SendStatus.CANCELLED, "suppressed")
        assert (repeat.status, repeat.repeat_index, repeat.due_at) == (
            SendStatus.PENDING,
            1,
            T0 + DAY,
        )
        assert await w.messages() == []

    scenario(db, body)


def test_deleted_subscriber_ends_the_series(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome", "repeat: {every: 1d, times: 1}\n"))
        ann = await w.subscriber(deleted_at=T0 - HOUR)
        await w.pending("welcome", ann, T0)
        await w.run(T0)
        [send] = await w.sends("welcome")
        assert (send.status, send.reason) == (SendStatus.CANCELLED, "deleted_subscriber")

    scenario(db, body)


AUDIENCE = "audience: {field: subscriber.fields.plan, op: eq, value: pro}\n"


def test_audience_is_checked_at_send_time(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome", AUDIENCE))
        free = await w.subscriber("free@shop.test", fields={"plan": "free"})
        pro = await w.subscriber("pro@shop.test", fields={"plan": "pro"})
        await w.pending("welcome", free, T0)
        await w.pending("welcome", pro, T0)
        await w.pending("welcome", free, T0, overrides={"plan": "pro"})  # api data overlays
        await w.run(T0)
        sends = await w.sends("welcome")
        assert [(s.status, s.reason) for s in sends] == [
            (SendStatus.CANCELLED, "audience"),
            (SendStatus.SENT, None),
            (SendStatus.SENT, None),
        ]

    scenario(db, body)


EXIT = "exit_on:\n  - event: purchase\n    where: {field: event.data.total, op: gt, value: 0}\n"


def test_exit_on_event_after_the_trigger_cancels(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("coupon", source("coupon", EXIT))
        ann = await w.subscriber("ann@shop.test")
        bob = await w.subscriber("bob@shop.test")
        cid = await w.subscriber("cid@shop.test")

        def events(tx: WriteTx) -> None:
            tx.add_event("purchase", "ann@shop.test", {"total": 5}, T0 - HOUR)  # after trigger
            tx.add_event("purchase", "bob@shop.test", {"total": 5}, T0 - 3 * HOUR)  # before it
            tx.add_event("purchase", "cid@shop.test", {"total": 0}, T0 - HOUR)  # `where` fails

        await w.write(events)
        for person in (ann, bob, cid):
            await w.pending("coupon", person, T0, trigger_at=T0 - 2 * HOUR)
        await w.run(T0)
        sends = await w.sends("coupon")
        assert [(s.email, s.reason) for s in sends] == [
            ("ann@shop.test", "exit_on"),
            ("bob@shop.test", None),
            ("cid@shop.test", None),
        ]

    scenario(db, body)


WINDOW = 'send_window: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:00"}\n'


def test_late_send_outside_its_window_waits_for_the_next_opening(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome", WINDOW))
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0 + 2 * HOUR)  # Monday 10:00, inside
        late = T0 + 12 * HOUR  # Monday 20:00: the runner was down
        assert await w.run(late) == 1
        send = await w.send("send-001")
        tuesday = T0 + DAY + HOUR
        assert (send.status, send.due_at, send.attempts) == (SendStatus.PENDING, tuesday, 0)
        assert await w.messages() == []
        await w.run(tuesday)
        assert (await w.send("send-001")).status == SendStatus.SENT

    scenario(db, body)


def test_send_now_outside_the_window_goes_out(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome", WINDOW))
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0 + 2 * HOUR)  # Monday 10:00, inside
        assert await w.write(lambda tx: tx.send_now("send-001", T0)) is True  # 08:00
        await w.run(T0)
        assert (await w.send("send-001")).status == SendStatus.SENT

    scenario(db, body)


def test_a_first_send_due_outside_its_window_waits_unless_sent_now(db: str) -> None:
    # The window was narrowed after the send was scheduled: only "send now" skips it.
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome", WINDOW))
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0)  # Monday 08:00, outside, never attempted
        await w.pending("welcome", ann, T0, skip_window=True)
        assert await w.run(T0) == 2
        waiting, sent_now = await w.send("send-001"), await w.send("send-002")
        assert (waiting.status, waiting.due_at, waiting.attempts) == (
            SendStatus.PENDING,
            T0 + HOUR,
            0,
        )
        assert sent_now.status == SendStatus.SENT

    scenario(db, body)


def test_a_retry_of_a_send_sent_now_also_skips_the_window(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome", WINDOW))
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0, skip_window=True, attempts=1)
        await w.run(T0)
        assert (await w.send("send-001")).status == SendStatus.SENT

    scenario(db, body)


# --- rendering, repeats ----------------------------------------------------------------


def test_render_error_fails_one_send_and_the_rest_go_out(db: str) -> None:
    async def body(w: World) -> None:
        broken = EMAIL.replace("{{ event.data.coupon | default('none') }}", "{{ event.data.x }}")
        text = "id: broken\nstatus: running\ntrigger: {type: api}\n" + broken
        await w.automation("broken", text)
        await w.automation("welcome", source("welcome"))
        ann = await w.subscriber()
        await w.pending("broken", ann, T0 - HOUR)
        await w.pending("welcome", ann, T0)
        assert await w.run(T0) == 2
        failed = await w.send("send-001")
        assert (failed.status, failed.reason) == (SendStatus.FAILED, "render_error")
        assert failed.last_error is not None and "UndefinedError" in failed.last_error
        assert (await w.send("send-002")).status == SendStatus.SENT
        [message] = await w.messages()
        assert message.automation_id == "welcome"
        assert "email.failed" not in [e.type for e in await w.internal_events()]

    scenario(db, body)


HOSTILE = (
    "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(21) }}"
)
SLOW = "{% for i in range(100000) %}{% for j in range(120) %}{% endfor %}{% endfor %}slow"


def hostile(automation_id: str, html: str) -> str:
    email = EMAIL.replace("\"<p>{{ event.data.coupon | default('none') }}</p>\"", repr(html))
    return f"id: {automation_id}\nstatus: running\ntrigger: {{type: api}}\n{email}"


def test_a_render_over_its_cpu_cap_fails_only_its_send(db: str) -> None:
    pool = RenderPool(1, cpu_seconds=0.5)

    async def body(w: World) -> None:
        await w.automation("bomb", hostile("bomb", HOSTILE))
        await w.automation("welcome", source("welcome"))
        ann = await w.subscriber()
        await w.pending("bomb", ann, T0 - HOUR)
        await w.pending("welcome", ann, T0)
        assert await w.run(T0, renderer=pool) == 2
        failed = await w.send("send-001")
        assert (failed.status, failed.reason) == (SendStatus.FAILED, "render_error")
        assert failed.last_error == "rendering used more than 0.5 s of CPU"
        assert (await w.send("send-002")).status == SendStatus.SENT

    try:
        scenario(db, body)
    finally:
        pool.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def kill_once_busy(pid: int, busy: float = 0.1, bound: float = 60.0) -> None:
    """SIGKILL the idle worker `pid` once it has spent `busy` s of CPU beyond now: mid-render,
    however slowly a loaded machine hands the job to it."""
    start, deadline = cpu_seconds(pid), time.monotonic() + bound
    while cpu_seconds(pid) - start < busy and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)


def test_a_render_worker_killed_mid_render_is_retried_not_failed(db: str) -> None:
    pool = RenderPool(1)

    async def body(w: World) -> None:
        await w.automation("slow", hostile("slow", SLOW))
        ann = await w.subscriber()
        await w.pending("slow", ann, T0)
        # A first email starts the worker, so the CPU it spends next is the slow render's.
        pool.render([EmailJob("warm", None, "warm", None, {}, "https://u/t")])
        killer = threading.Thread(target=kill_once_busy, args=(pool.worker_pids()[0],))
        killer.start()
        assert await w.run(T0, rng=random.Random(1), renderer=pool) == 1
        killer.join()
        retried = await w.send("send-001")
        assert (retried.status, retried.attempts) == (SendStatus.PENDING, 1)
        assert retried.last_error is not None and "signal 9" in retried.last_error
        assert retried.due_at > T0
        assert await w.run(retried.due_at, renderer=pool) == 1
        assert (await w.send("send-001")).status == SendStatus.SENT
        [message] = await w.messages()
        assert message.html == "slow"

    try:
        scenario(db, body)
    finally:
        pool.close()


def test_a_render_that_never_runs_fails_once_its_attempts_are_spent(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = RenderPool(1)
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")

    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"))
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0, attempts=CTX.max_attempts - 1)
        assert await w.run(T0, renderer=pool) == 1
        failed = await w.send("send-001")
        assert (failed.status, failed.reason) == (SendStatus.FAILED, "render_error")
        assert failed.last_error is not None
        assert failed.last_error.startswith(f"retries exhausted after {CTX.max_attempts} attempts")

    scenario(db, body)


def test_repeats_are_created_one_at_a_time_up_to_times(db: str) -> None:
    async def body(w: World) -> None:
        extra = "wait: 1h\nrepeat: {every: 1d, times: 2}\n"
        await w.automation("drip", source("drip", extra))
        ann = await w.subscriber()
        trigger = T0 - HOUR
        await w.pending("drip", ann, T0, trigger_at=trigger, overrides={"plan": "pro"})
        await w.run(T0)
        sends = await w.sends("drip")
        assert [(s.repeat_index, s.status, s.due_at) for s in sends] == [
            (0, SendStatus.SENT, T0),
            (1, SendStatus.PENDING, T0 + DAY),
        ]
        repeat = sends[1]
        assert (repeat.series_id, repeat.trigger_at) == ("send-001", trigger)
        assert repeat.overrides == {"plan": "pro"}
        await w.run(T0 + DAY)
        await w.run(T0 + 2 * DAY)
        await w.run(T0 + 3 * DAY)
        sends = await w.sends("drip")
        assert [(s.repeat_index, s.status) for s in sends] == [
            (0, SendStatus.SENT),
            (1, SendStatus.SENT),
            (2, SendStatus.SENT),
        ]

    scenario(db, body)


def test_repeat_due_time_moves_into_the_window(db: str) -> None:
    async def body(w: World) -> None:
        extra = WINDOW + "repeat: {every: 12h, times: 1}\n"
        await w.automation("drip", source("drip", extra))
        ann = await w.subscriber()
        await w.pending("drip", ann, T0 + 2 * HOUR, trigger_at=T0 + 2 * HOUR)
        await w.run(T0 + 2 * HOUR)
        repeat = (await w.sends("drip"))[1]
        assert repeat.due_at == T0 + DAY + HOUR  # Monday 22:00 -> Tuesday 09:00

    scenario(db, body)


# --- providers: retries, failures, unknown outcomes -------------------------------------


def test_retryable_error_requeues_with_backoff_until_the_budget(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"))
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0)
        busy = [ProviderError("503 busy", retryable=True) for _ in range(3)]
        provider = Scripted(*busy)
        now = T0
        for attempt in (1, 2):
            await w.run(now, provider, random.Random(attempt))
            send = await w.send("send-001")
            assert (send.status, send.attempts, send.last_error) == (
                SendStatus.PENDING,
                attempt,
                "503 busy",
            )
            bound = timedelta(seconds=retry.BACKOFF_BASE * 2 ** (attempt - 1))
            assert now <= send.due_at <= now + bound
            now = send.due_at
        await w.run(now, provider)  # the third attempt is the last (max_attempts=3)
        send = await w.send("send-001")
        assert (send.status, send.reason) == (SendStatus.FAILED, "retries_exhausted")
        assert send.last_error == "retries exhausted after 3 attempts: 503 busy"
        [message] = await w.messages()
        assert (message.status, message.provider_type) == ("failed", "scripted")
        events = await w.internal_events()
        assert [e.type for e in events] == ["email.failed"]
        assert events[0].data["message_id"] == message.id

    scenario(db, body)


def test_retry_after_is_used_as_given_and_absurd_values_are_capped(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"))
        ann = await w.subscriber()
        for seconds in (7.0, 7200.0, 1e14, float("inf")):
            send = await w.pending("welcome", ann, T0)
            asked = ProviderError("429", retryable=True, retry_after=seconds)
            await w.run(T0, Scripted(asked), random.Random(1))
            due = (await w.send(send.id)).due_at
            waited = (due - T0).total_seconds()
            if seconds == 7.0:  # as given, plus at most 10 % jitter
                assert 7.0 <= waited <= 7.7
            else:  # at most an hour, and no crash while recording it
                assert waited == 3600.0

    scenario(db, body)


def test_retry_skips_the_pause_check_but_not_a_stop(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"), moments=PAUSE)
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0 + HOUR, attempts=1)
        await w.run(T0 + HOUR)
        assert (await w.send("send-001")).status == SendStatus.SENT
        stopped = [(T0 - DAY, "running"), (T0, "stopped")]
        await w.automation("gone", source("gone"), moments=stopped)
        await w.pending("gone", ann, T0 + HOUR, attempts=1)
        await w.run(T0 + HOUR)
        assert (await w.send("send-002")).reason == "stopped"

    scenario(db, body)


def test_permanent_error_fails_with_the_provider_message(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome", "repeat: {every: 1d, times: 1}\n"))
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0)
        await w.pending("welcome", ann, T0, id="send-zzz")

        async def refuse_first(message: OutgoingMessage) -> ProviderError | None:
            if message.send_id == "send-001":
                return ProviderError("422 invalid recipient", retryable=False)
            return None

        provider = Scripted(refuse_first, refuse_first)
        assert await w.run(T0, provider) == 2
        failed = await w.send("send-001")
        assert (failed.status, failed.reason, failed.last_error) == (
            SendStatus.FAILED,
            "provider_error",
            "422 invalid recipient",
        )
        assert (await w.send("send-zzz")).status == SendStatus.SENT  # the loop went on
        kinds = sorted(e.type for e in await w.internal_events())
        assert kinds == ["email.failed", "email.sent"]
        repeats = [s for s in await w.sends("welcome") if s.repeat_index == 1]
        assert len(repeats) == 2  # a failure does not end the series

    scenario(db, body)


def test_unknown_outcome_is_not_retried(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"))
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0)
        timeout = ProviderError("read timeout", retryable=False, outcome_unknown=True)
        await w.run(T0, Scripted(timeout))
        send = await w.send("send-001")
        assert (send.status, send.last_error) == (SendStatus.OUTCOME_UNKNOWN, "read timeout")
        assert await w.run(T0 + DAY) == 0
        # The message is kept (status outcome_unknown) so provider events naming it can
        # reconcile the send; no email.sent / email.failed is raised for it.
        [message] = await w.messages()
        assert (message.status, message.provider_message_id) == ("outcome_unknown", None)
        assert await w.internal_events() == []

    scenario(db, body)


def test_missing_provider_fails_the_send(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome").replace("email:", "provider: bulk\nemail:"))
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0)
        await w.run(T0)
        send = await w.send("send-001")
        assert send.status == SendStatus.FAILED
        assert send.last_error == "provider 'bulk' is not configured"

    scenario(db, body)


def test_an_unexpected_error_does_not_stop_the_loop(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"))
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0)
        await w.pending("welcome", ann, T0)

        async def crash(message: OutgoingMessage) -> None:
            if message.send_id == "send-001":
                raise RuntimeError("adapter bug")

        assert await w.run(T0, Scripted(crash, crash)) == 2
        assert (await w.send("send-002")).status == SendStatus.SENT
        assert (await w.send("send-001")).status == SendStatus.CLAIMED  # resumed after its lease

    scenario(db, body)


def test_a_stale_lease_cannot_finish(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"))
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0)
        later = T0 + timedelta(seconds=CTX.lease_seconds + 1)

        async def overtaken(message: OutgoingMessage) -> None:
            # While this call hangs, the lease expires and another sender claims the send.
            taken = await w.write(lambda tx: tx.claim_due(later, 10, later + HOUR, "other"))
            assert [s.id for s in taken] == ["send-001"]

        assert await w.run(T0, Scripted(overtaken)) == 1
        send = await w.send("send-001")
        assert (send.status, send.lease_token) == (SendStatus.CLAIMED, "other")
        assert await w.messages() == []  # the late result was dropped
        assert await w.internal_events() == []

    scenario(db, body)


def test_a_send_taken_over_before_its_mark_is_not_sent(db: str) -> None:
    from runner.providers.ratelimit import RateLimiter

    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"))
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0)
        later = T0 + timedelta(seconds=CTX.lease_seconds + 1)

        class Overtaken(RateLimiter):
            # The last step before the in-flight mark: the lease expires and another
            # sender claims the send meanwhile.
            async def acquire(self, max_wait: float | None = None) -> bool:
                taken = await w.write(lambda tx: tx.claim_due(later, 10, later + HOUR, "other"))
                assert [s.id for s in taken] == ["send-001"]
                return True

        provider = Scripted()
        limiters = {"default": Overtaken("10/s")}
        assert await w.run(T0, provider, limiters=limiters) == 1
        assert provider.sent == []  # not written: the other sender owns it now
        send = await w.send("send-001")
        assert (send.status, send.lease_token, send.in_flight) == (
            SendStatus.CLAIMED,
            "other",
            None,
        )

    scenario(db, body)


class KeyedBatches:
    """A provider with idempotency keys and batches of 3; the first request times out."""

    type = "keyed"
    idempotent = True
    reports_delivery = True
    max_batch = 3

    def __init__(self) -> None:
        self.name = "default"
        self.batches: list[list[OutgoingMessage]] = []

    async def send(self, message: OutgoingMessage) -> SendResult:
        raise AssertionError("three sends are due: always a batch")

    async def send_batch(self, messages: list[OutgoingMessage]) -> list[SendResult | ProviderError]:
        self.batches.append(messages)
        if len(self.batches) == 1:
            raise ProviderError("ReadTimeout", retryable=True, outcome_unknown=True)
        return [SendResult(f"p-{m.message_id}") for m in messages]


def test_a_batch_that_may_have_gone_out_is_repeated_whole_and_unchanged(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"))
        ann = await w.subscriber()
        for _ in range(3):
            await w.pending("welcome", ann, T0)
        provider = KeyedBatches()
        await w.run(T0, provider, random.Random(3))
        waiting = [s for s in await w.sends("welcome") if s.status is SendStatus.PENDING]
        assert len(waiting) == 3 and len({s.due_at for s in waiting}) == 1  # one due time
        assert all(s.in_flight is not None and s.in_flight["carried"] for s in waiting)
        # A new subscriber's name changes what a fresh render would produce: the repeat
        # must not re-render. And a round claiming only one send still repeats all three.
        await w.write(lambda tx: tx.save_subscriber(Subscriber(ann.id, ann.email, {"name": "Zed"})))
        await w.run(waiting[0].due_at, provider, limit=1)
        first, second = provider.batches
        assert [m.send_id for m in second] == [m.send_id for m in first]
        assert second == first  # the very same messages (subjects still say "Ann")
        sent = [s for s in await w.sends("welcome") if s.status is SendStatus.SENT]
        assert len(sent) == 3 and {s.attempts for s in sent} == {2}

    scenario(db, body)


# --- the provider registry --------------------------------------------------------------


def test_outbox_accepts_every_message_under_our_id() -> None:
    from runner.core.config import Config
    from runner.providers import build_providers

    providers = build_providers(Config())
    outbox = providers["default"]
    assert (outbox.name, outbox.type, outbox.reports_delivery) == ("default", "outbox", False)
    message = OutgoingMessage("s1", "m1", "a@shop.test", "s@shop.test", None, "Hi", None, "t")
    assert asyncio.run(outbox.send(message)) == SendResult("m1")


def test_providers_are_a_frozen_value_with_read_only_lookups() -> None:
    import dataclasses

    from runner.providers.ratelimit import RateLimiter

    outbox = OutboxProvider("default")
    given = {"default": outbox}
    providers = Providers(given)
    given["other"] = OutboxProvider("other")  # the value took a copy
    assert (list(providers), providers["default"], providers.get("x")) == (
        ["default"],
        outbox,
        None,
    )
    assert "default" in providers and len(providers) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        providers.gate = providers.gate  # type: ignore[misc]
    with pytest.raises(TypeError):
        providers.by_name["x"] = outbox  # type: ignore[index]
    limiter = RateLimiter("5/s")
    limited = providers.with_limiters({"default": limiter})
    assert limited.limiters["default"] is limiter and providers.limiters == {}
    assert limited.gate is providers.gate and limited["default"] is outbox


def test_a_provider_needing_secrets_is_not_built_from_a_bare_config() -> None:
    from runner.core.config import Config
    from runner.providers import ProviderConfigError, build_providers

    config = Config.model_validate({"providers": {"bulk": {"type": "resend", "api_key_env": "K"}}})
    with pytest.raises(ProviderConfigError, match="provider 'bulk': its secrets are not resolved"):
        build_providers(config)


def test_build_providers_from_settings_shares_one_client_secrets_and_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from runner import providers as registry
    from runner.core.config import Config
    from runner.core.settings import Settings

    built: list[tuple[str, Any, Any, httpx.AsyncClient]] = []

    def fake(name: str, config: Any, secrets: Any, client: httpx.AsyncClient) -> Provider:
        built.append((name, config, dict(secrets), client))
        return Scripted()

    monkeypatch.setitem(registry.PROVIDER_TYPES, "postmark", fake)
    config = Config.model_validate(
        {
            "providers": {
                "default": {"type": "outbox"},
                "tx": {"type": "postmark", "server_token_env": "PM", "rate_limit": "5/s"},
                "bulk": {"type": "postmark", "server_token_env": "PM2"},
            }
        }
    )
    settings = Settings(
        repo=tmp_path,
        config=config,
        providers=dict(config.providers),
        provider_secrets={
            "default": {},
            "tx": {"server_token": "a"},
            "bulk": {"server_token": "b"},
        },
    )
    providers = registry.build_providers(settings)
    assert sorted(providers) == ["bulk", "default", "tx"]
    assert [(n, s) for n, _, s, _ in built] == [
        ("tx", {"server_token": "a"}),
        ("bulk", {"server_token": "b"}),
    ]
    assert built[0][3] is built[1][3] is providers.client  # one pooled client
    assert list(providers.limiters) == ["tx"] and providers.limiters["tx"].capacity == 5
    assert providers.paused() == {}
    asyncio.run(providers.aclose())
    assert providers.client is not None and providers.client.is_closed
    # Only the outbox: no HTTP client is made at all.
    assert registry.build_providers(Config()).client is None


# --- retry policy in the loop: auth pause, suppression, batches, the rate limit ----------


def test_auth_error_pauses_the_provider_puts_sends_back_and_probes_after_5_minutes(
    db: str,
) -> None:
    from runner.providers import ProviderGate

    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"))
        ann = await w.subscriber()
        for _ in range(3):
            await w.pending("welcome", ann, T0)
        gate = ProviderGate()
        denied = ProviderError("mail: HTTP 401: bad token", retryable=False, auth=True, status=401)
        provider = Scripted(denied, denied, denied, denied)
        assert await w.run(T0, provider, gate=gate, concurrency=1) == 3
        probe_at = T0 + timedelta(minutes=5)
        assert gate.paused() == {"default": probe_at}
        sends = await w.sends("welcome")
        # Nothing burned: back to PENDING unattempted, due when the provider is probed.
        assert {(s.status, s.attempts, s.due_at) for s in sends} == {
            (SendStatus.PENDING, 0, probe_at)
        }
        assert await w.messages() == [] and await w.internal_events() == []
        assert len(provider.sent) == 1  # the later requests of the round were not made
        tried = len(provider.sent)
        assert await w.run(T0 + timedelta(minutes=4), provider, gate=gate) == 0
        # The probe: one send goes through and is refused again; the others wait unsent.
        assert await w.run(probe_at, provider, gate=gate) == 3
        assert len(provider.sent) == tried + 1
        again = probe_at + timedelta(minutes=5)
        assert gate.paused() == {"default": again}
        assert {(s.status, s.attempts) for s in await w.sends("welcome")} == {
            (SendStatus.PENDING, 0)
        }
        # Credentials fixed: the next probe succeeds and the provider resumes.
        provider.answers = []
        await w.run(again, provider, gate=gate)
        assert gate.paused() == {}
        await w.run(again + timedelta(minutes=5), provider, gate=gate)
        assert [s.status for s in await w.sends("welcome")] == [SendStatus.SENT] * 3

    scenario(db, body)


def test_a_probe_that_never_reached_the_provider_is_replaced(db: str) -> None:
    from runner.providers import ProviderGate

    gate = ProviderGate()
    gate.pause_provider("default", T0)
    later = T0 + timedelta(minutes=5)
    assert gate.held_until("default", later) is None  # the probe
    assert gate.held_until("default", later) == later + timedelta(minutes=5)
    assert gate.probing("default")
    # Its send was cancelled before any request: after another pause a new probe goes.
    assert gate.held_until("default", later + timedelta(minutes=5)) is None


def test_a_refused_recipient_is_suppressed_and_the_send_fails(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"))
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0)
        inactive = ProviderError(
            "postmark: HTTP 422: [ErrorCode 406] inactive recipient",
            retryable=False,
            suppress="bounced",
            status=422,
        )
        await w.run(T0, Scripted(inactive))
        send = await w.send("send-001")
        assert (send.status, send.reason, send.last_error) == (
            SendStatus.FAILED,
            "suppressed",
            inactive.message,
        )
        person = await w.store.read(lambda tx: tx.subscriber("ann@shop.test"))
        assert person is not None
        assert (person.suppressed, person.suppressed_at) == ("bounced", T0)
        [message] = await w.messages()
        assert message.status == "failed"
        assert [e.type for e in await w.internal_events()] == ["email.failed"]

    scenario(db, body)


class Batching(Scripted):
    """A provider with a batch endpoint; `items` maps a send id to its per-item outcome."""

    type = "batching"

    def __init__(self, max_batch: int, items: dict[str, ProviderError] | None = None) -> None:
        super().__init__()
        self.max_batch = max_batch
        self.items = items or {}
        self.batches: list[list[str]] = []
        self.whole: ProviderError | None = None

    async def send_batch(self, messages: list[OutgoingMessage]) -> list[SendResult | ProviderError]:
        self.batches.append([m.send_id for m in messages])
        if self.whole is not None:
            raise self.whole
        return [self.items.get(m.send_id) or SendResult(f"p-{m.message_id}") for m in messages]


def test_batches_go_in_chunks_and_each_item_gets_its_own_outcome(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"))
        ann = await w.subscriber()
        for _ in range(5):
            await w.pending("welcome", ann, T0)
        provider = Batching(
            3,
            {
                "send-002": ProviderError("HTTP 429", retryable=True, retry_after=600.0),
                "send-003": ProviderError("HTTP 422: bad address", retryable=False),
                "send-004": ProviderError("timeout", retryable=False, outcome_unknown=True),
            },
        )
        assert await w.run(T0, provider, random.Random(3)) == 5
        assert provider.batches == [
            ["send-001", "send-002", "send-003"],
            ["send-004", "send-005"],
        ]
        assert provider.sent == []  # never one by one
        got = {s.id: (s.status, s.attempts) for s in await w.sends("welcome")}
        assert got == {
            "send-001": (SendStatus.SENT, 1),
            "send-002": (SendStatus.PENDING, 1),
            "send-003": (SendStatus.FAILED, 1),
            "send-004": (SendStatus.OUTCOME_UNKNOWN, 1),
            "send-005": (SendStatus.SENT, 1),
        }
        assert (await w.send("send-002")).due_at >= T0 + timedelta(seconds=600)
        assert (await w.send("send-003")).last_error == "HTTP 422: bad address"
        kinds = sorted(e.type for e in await w.internal_events())
        assert kinds == ["email.failed", "email.sent", "email.sent"]

    scenario(db, body)


def test_a_failed_batch_request_is_every_items_outcome(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"))
        ann = await w.subscriber()
        for _ in range(3):
            await w.pending("welcome", ann, T0)
        provider = Batching(500)
        provider.whole = ProviderError("HTTP 503", retryable=True)
        await w.run(T0, provider, random.Random(1))
        assert provider.batches == [["send-001", "send-002", "send-003"]]
        sends = await w.sends("welcome")
        assert {(s.status, s.attempts, s.last_error) for s in sends} == {
            (SendStatus.PENDING, 1, "HTTP 503")
        }

    scenario(db, body)


def test_a_single_due_send_of_a_batching_provider_uses_send(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"))
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0)
        provider = Batching(100)
        await w.run(T0, provider)
        assert (provider.batches, len(provider.sent)) == ([], 1)
        assert (await w.send("send-001")).status == SendStatus.SENT

    scenario(db, body)


class FakeTime:
    """Monotonic time that moves only when the limiter sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_rate_limit_spaces_provider_requests(db: str) -> None:
    from runner.providers.ratelimit import RateLimiter

    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"))
        ann = await w.subscriber()
        for _ in range(6):
            await w.pending("welcome", ann, T0)
        fake = FakeTime()
        grants: list[float] = []

        class Granting(RateLimiter):
            # The request is written right after its grant and its in-flight mark; the mark's
            # commit takes real time, which this fake clock does not see, so grants are timed.
            async def acquire(self, max_wait: float | None = None) -> bool:
                granted = await super().acquire(max_wait)
                grants.append(fake.now)
                return granted

        limiter = Granting("2/s", monotonic=fake.monotonic, sleep=fake.sleep)
        provider = Scripted()
        assert await w.run(T0, provider, limiters={"default": limiter}) == 6
        assert sorted(grants) == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.5, 2.0])
        assert sum(fake.slept) == pytest.approx(2.0)
        assert len(provider.sent) == 6
        assert {s.status for s in await w.sends("welcome")} == {SendStatus.SENT}

    scenario(db, body)


def test_a_rate_limit_wait_longer_than_the_lease_allows_puts_sends_back(db: str) -> None:
    from runner.providers.ratelimit import RateLimiter

    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"))
        ann = await w.subscriber()
        for _ in range(3):
            await w.pending("welcome", ann, T0)
        fake = FakeTime()
        limiter = RateLimiter("1/h", monotonic=fake.monotonic, sleep=fake.sleep)
        provider = Scripted()
        await w.run(T0, provider, limiters={"default": limiter}, concurrency=1)
        assert len(provider.sent) == 1 and fake.slept == []
        later = T0 + timedelta(seconds=CTX.lease_seconds / 2)
        got = sorted((s.status, s.attempts, s.due_at) for s in await w.sends("welcome"))
        assert got == [
            (SendStatus.PENDING, 0, later),
            (SendStatus.PENDING, 0, later),
            (SendStatus.SENT, 1, T0),
        ]

    scenario(db, body)


@pytest.mark.parametrize(
    ("other", "waiting"),
    [
        (None, []),  # nobody listens: stored already processed
        (  # an email trigger on the sending automation hears all of its email events
            "{type: email, action: opened, automation: welcome}",
            ["email.sent", "email.delivered"],
        ),
        ("{type: api}\nexit_on:\n  - event: email.sent", ["email.sent"]),  # an exit on one
    ],
)
def test_email_events_wait_for_processing_only_when_an_automation_listens(
    db: str, other: str | None, waiting: list[str]
) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"))
        if other is not None:
            await w.automation("other", source("other", trigger=other))
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0)
        await w.run(T0)
        stored = await w.internal_events()
        assert [e.type for e in stored] == ["email.sent", "email.delivered"]
        unprocessed = await w.write(lambda tx: tx.unprocessed_events(100))
        assert [e.type for e in unprocessed] == waiting

    scenario(db, body)


def test_email_events_wait_when_a_reload_committed_after_the_round_read_its_catalog(
    db: str,
) -> None:
    """The round's catalog shows no listener, but a reload committed since may have added one
    (running before the email went out): its events must reach processing."""

    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"))
        await w.write(lambda tx: tx.set_meta(REVISION_META, "after-the-round-read-it"))
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0)
        await w.run(T0)
        unprocessed = await w.write(lambda tx: tx.unprocessed_events(100))
        assert [e.type for e in unprocessed] == ["email.sent", "email.delivered"]

    scenario(db, body)


def test_observer_is_told_each_stored_message_delay_after_its_commit(db: str) -> None:
    async def body(w: World) -> None:
        await w.automation("welcome", source("welcome"))
        ann = await w.subscriber()
        await w.pending("welcome", ann, T0 - timedelta(seconds=90))
        await w.pending("welcome", ann, T0 + HOUR)  # not due: no message, no delay
        delays: list[float] = []
        assert await w.run(T0, observe=delays.append) == 1
        assert delays == [90.0]
        assert len(await w.messages()) == 1

    scenario(db, body)
