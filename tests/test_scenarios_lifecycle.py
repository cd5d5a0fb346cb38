"""Lifecycle scenarios end to end: the HTTP API on a real SQLite file with the fake clock.

Each test drives the runner as a client would (events, provider webhooks, restarts that apply
edited files) and asserts exactly who got which email when, and why a send was cancelled.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runner.core.records import PendingSend, SendStatus
from tests.harness import START, Harness, write_repo

T0 = START  # Monday 2026-03-02 09:00 UTC
FROM = '"Shop <news@shop.test>"'


def automation(ident: str, trigger: str, *, status: str = "running", extra: str = "") -> str:
    """An automation file: `trigger` and `extra` are YAML lines (extra at top level)."""
    return (
        f"id: {ident}\nstatus: {status}\ntrigger:\n{_indent(trigger)}{extra}"
        f"email:\n  from: {FROM}\n  subject: {ident}\n  text: Hello\n"
    )


def _indent(lines: str) -> str:
    return "".join(f"  {line}\n" for line in lines.strip().splitlines())


def on(event: str) -> str:
    """An event trigger."""
    return f"type: event\nevent: {event}"


PRODUCT_INTRO = automation("product-intro", on("subscriber.added"))
COUPON = automation(
    "coupon-after-open",
    "type: email\naction: opened\nautomation: product-intro",
    extra="wait: 7d\nexit_on:\n  - event: purchase\n",
)


def edit(repo: Path, ident: str, old: str, new: str) -> None:
    """Replace `old` by `new` in one automation file (between two runs of the runner)."""
    path = repo / "automations" / f"{ident}.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@contextmanager
def runner(repo: Path, at: datetime) -> Iterator[Harness]:
    """One run of the runner starting at `at` (a restart is a second `runner` on the repo)."""
    with Harness(repo, start=at) as h:
        assert h.report is not None and h.report.refused == [], h.report
        yield h


def at(value: str) -> datetime:
    """An RFC 3339 instant."""
    return datetime.fromisoformat(value).astimezone(UTC)


def iso(value: datetime) -> str:
    """The API's form of an instant."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def outbox(h: Harness, automation_id: str | None = None) -> list[tuple[str, str, str]]:
    """(to, automation, sent_at) of every outbox message, oldest first."""
    params = {"limit": "500", **({"automation": automation_id} if automation_id else {})}
    messages: list[dict[str, Any]] = h.http.get("/v1/outbox", params=params).json()["messages"]
    return sorted(
        ((m["to"], m["automation"], m["sent_at"]) for m in messages),
        key=lambda x: (x[2], x[0], x[1]),
    )


def pending(h: Harness, automation_id: str) -> list[tuple[str, str]]:
    """(email, due_at) of the active sends listed by the pending queue API."""
    listed = h.http.get(f"/v1/automations/{automation_id}/pending").json()["pending"]
    return sorted((s["email"], s["due_at"]) for s in listed)


def sends(h: Harness, automation_id: str) -> list[PendingSend]:
    """Every send of an automation, whatever its status, in creation order."""
    every = list(SendStatus)
    found = h.read(lambda tx: tx.pending_sends(automation_id, every, 1000))
    return sorted(found, key=lambda s: (s.created_at, s.email, s.repeat_index))


def cancelled(h: Harness, automation_id: str) -> list[tuple[str, str | None]]:
    """(email, reason) of the cancelled sends of an automation."""
    return sorted(
        (s.email, s.reason) for s in sends(h, automation_id) if s.status is SendStatus.CANCELLED
    )


def ping(h: Harness, email: str, kind: str = "ping", **extra: Any) -> None:
    """Post one event (a unique id per call) and expect it stored."""
    event_id = f"{kind}-{email}-{h.clock.now().isoformat()}"
    assert h.post_event(kind, email, event_id=event_id, **extra).status_code == 202


def open_email(h: Harness, message_id: str) -> None:
    """An `opened` provider event for an outbox message."""
    body = {"id": f"open-{message_id}", "type": "opened", "message_id": message_id}
    response = h.http.post("/v1/providers/default/webhook", json=body)
    assert response.json()["results"] == [{"id": body["id"], "status": "stored"}]


def message_id(h: Harness, to: str, automation_id: str) -> str:
    """The id of the one outbox message of `automation_id` to `to`."""
    messages = h.http.get("/v1/outbox", params={"automation": automation_id}).json()["messages"]
    found = [m["id"] for m in messages if m["to"] == to]
    assert len(found) == 1, messages
    return str(found[0])


def settle(h: Harness, delta: timedelta = timedelta(0)) -> None:
    """Move the clock and run the engine until idle."""
    h.advance(delta)
    h.drain()


# --- 1. the seed scenario ---------------------------------------------------------------


def test_seed_scenario_coupon_after_open(tmp_path: Path) -> None:
    write_repo(tmp_path, {"product-intro": PRODUCT_INTRO, "coupon-after-open": COUPON})
    with runner(tmp_path, T0) as h:
        ping(h, "a@shop.test", "signup")
        ping(h, "b@shop.test", "signup")
        settle(h)
        assert outbox(h) == [
            ("a@shop.test", "product-intro", iso(T0)),
            ("b@shop.test", "product-intro", iso(T0)),
        ]
        opened_at = T0 + timedelta(hours=2)
        h.advance(opened_at - T0)
        open_email(h, message_id(h, "a@shop.test", "product-intro"))
        open_email(h, message_id(h, "b@shop.test", "product-intro"))
        settle(h)
        coupon_due = iso(opened_at + timedelta(days=7))
        assert pending(h, "coupon-after-open") == [
            ("a@shop.test", coupon_due),
            ("b@shop.test", coupon_due),
        ]
        settle(h, timedelta(days=3))  # day 3: B buys
        ping(h, "b@shop.test", "purchase", data={"total": 30})
        settle(h)
        assert cancelled(h, "coupon-after-open") == [("b@shop.test", "exit_on")]
        assert pending(h, "coupon-after-open") == [("a@shop.test", coupon_due)]
        settle(h, timedelta(days=4, seconds=-1))  # open time + 7d - 1s: not yet
        assert outbox(h, "coupon-after-open") == []
        settle(h, timedelta(seconds=1))
        assert outbox(h, "coupon-after-open") == [("a@shop.test", "coupon-after-open", coupon_due)]
        settle(h, timedelta(days=30))
        assert outbox(h, "coupon-after-open") == [("a@shop.test", "coupon-after-open", coupon_due)]
        assert pending(h, "coupon-after-open") == []
        stats = h.http.get("/v1/automations/coupon-after-open/stats").json()["stats"]
        assert (stats["triggered"], stats["sent"]) == (2, 1)


# --- 2. gating: draft, scheduled, paused and stopped never trigger -----------------------


def test_events_while_not_running_never_trigger_even_after_restart(tmp_path: Path) -> None:
    start_at = T0 + timedelta(days=2)
    files = {
        "d": automation("d", on("ping"), status="draft"),
        "s": automation("s", on("ping"), status="scheduled", extra=f"start_at: {iso(start_at)}\n"),
        "p": automation("p", on("ping")),
        "x": automation("x", on("ping")),
    }
    write_repo(tmp_path, files)
    with runner(tmp_path, T0) as h:
        settle(h)
    edit(tmp_path, "p", "status: running", "status: paused")
    edit(tmp_path, "x", "status: running", "status: stopped")
    with runner(tmp_path, T0 + timedelta(hours=1)) as h:
        ping(h, "a@shop.test")
        settle(h)
        assert all(sends(h, ident) == [] for ident in files)
    edit(tmp_path, "d", "status: draft", "status: running")
    edit(tmp_path, "p", "status: paused", "status: running")
    with runner(tmp_path, start_at + timedelta(hours=1)) as h:
        settle(h)
        assert all(sends(h, ident) == [] for ident in files)
        assert outbox(h) == []
        ping(h, "b@shop.test")  # the control: every automation but the stopped one is live now
        settle(h)
        sent_at = iso(start_at + timedelta(hours=1))
        assert outbox(h) == [("b@shop.test", ident, sent_at) for ident in ("d", "p", "s")]
        assert all(s.email == "b@shop.test" for ident in files for s in sends(h, ident))


# --- 3. exit_on sees every event ----------------------------------------------------------


def test_purchase_while_paused_cancels_the_coupon(tmp_path: Path) -> None:
    write_repo(tmp_path, {"product-intro": PRODUCT_INTRO, "coupon-after-open": COUPON})
    with runner(tmp_path, T0) as h:
        ping(h, "a@shop.test", "signup")
        settle(h)
        open_email(h, message_id(h, "a@shop.test", "product-intro"))
        settle(h)
        assert pending(h, "coupon-after-open") == [("a@shop.test", iso(T0 + timedelta(days=7)))]
    edit(tmp_path, "coupon-after-open", "status: running", "status: paused")
    bought = T0 + timedelta(days=2)
    with runner(tmp_path, bought) as h:
        ping(h, "a@shop.test", "purchase")
        settle(h)
        assert cancelled(h, "coupon-after-open") == [("a@shop.test", "exit_on")]
        (send,) = sends(h, "coupon-after-open")
        assert send.updated_at == bought
    edit(tmp_path, "coupon-after-open", "status: paused", "status: running")
    with runner(tmp_path, T0 + timedelta(days=3)) as h:
        settle(h, timedelta(days=10))
        assert outbox(h, "coupon-after-open") == []
        assert cancelled(h, "coupon-after-open") == [("a@shop.test", "exit_on")]


# --- 4. pause: a send due while paused is cancelled and not revived ----------------------


def test_send_due_while_paused_is_cancelled_one_due_after_restart_goes_out(
    tmp_path: Path,
) -> None:
    write_repo(tmp_path, {"later": automation("later", on("ping"), extra="wait: 3d\n")})
    with runner(tmp_path, T0) as h:
        ping(h, "a@shop.test")  # due T0+3d: while paused
        settle(h, timedelta(hours=2))
        ping(h, "b@shop.test")  # due T0+3d2h: after the restart
        settle(h)
        assert pending(h, "later") == [
            ("a@shop.test", iso(T0 + timedelta(days=3))),
            ("b@shop.test", iso(T0 + timedelta(days=3, hours=2))),
        ]
    edit(tmp_path, "later", "status: running", "status: paused")
    with runner(tmp_path, T0 + timedelta(days=1)) as h:
        settle(h)
        assert len(pending(h, "later")) == 2  # pausing alone cancels nothing
    edit(tmp_path, "later", "status: paused", "status: running")
    restart = T0 + timedelta(days=3, hours=1)  # after A's due time, before B's
    with runner(tmp_path, restart) as h:
        settle(h)
        assert cancelled(h, "later") == [("a@shop.test", "paused")]
        assert outbox(h) == []
        settle(h, timedelta(hours=1))
        assert outbox(h) == [("b@shop.test", "later", iso(T0 + timedelta(days=3, hours=2)))]
        settle(h, timedelta(days=5))
        assert [m[0] for m in outbox(h)] == ["b@shop.test"]
        assert cancelled(h, "later") == [("a@shop.test", "paused")]


# --- 5. stopping cancels every pending send -----------------------------------------------


def test_stopping_cancels_all_pending_sends(tmp_path: Path) -> None:
    files = {
        "later": automation("later", on("ping"), extra="wait: 1d\n"),
        "other": automation("other", on("ping"), extra="wait: 1d\n"),
    }
    write_repo(tmp_path, files)
    people = ["a@shop.test", "b@shop.test", "c@shop.test"]
    with runner(tmp_path, T0) as h:
        for email in people:
            ping(h, email)
        settle(h)
        assert [email for email, _ in pending(h, "later")] == people
    edit(tmp_path, "later", "status: running", "status: stopped")
    with runner(tmp_path, T0 + timedelta(hours=1)) as h:
        # applied at start-up, before the engine ran once
        assert cancelled(h, "later") == [(email, "stopped") for email in people]
        assert pending(h, "later") == []
        settle(h, timedelta(days=2))
        assert outbox(h) == [
            (email, "other", iso(T0 + timedelta(days=2, hours=1))) for email in people
        ]
        ping(h, "d@shop.test")
        settle(h)
        assert [s.email for s in sends(h, "later")] == people


# --- 6. send windows ----------------------------------------------------------------------


def window(start: str, end: str, zone: str, days: str = "") -> str:
    """A `send_window` block."""
    listed = f"  days: [{days}]\n" if days else ""
    return f'send_window:\n{listed}  start: "{start}"\n  end: "{end}"\n  timezone: {zone}\n'


def test_window_opens_in_its_time_zone_weekdays(tmp_path: Path) -> None:
    seoul = window("09:00", "18:00", "Asia/Seoul", "mon, tue, wed, thu, fri")
    write_repo(tmp_path, {"kr": automation("kr", on("ping"), extra=seoul)})
    with runner(tmp_path, T0) as h:  # Monday 18:00 KST: the window has just closed
        ping(h, "a@shop.test")
        settle(h)
        tuesday = at("2026-03-03T09:00:00+09:00")
        assert pending(h, "kr") == [("a@shop.test", iso(tuesday))]
        settle(h, tuesday - h.clock.now() - timedelta(seconds=1))
        assert outbox(h) == []
        settle(h, timedelta(seconds=1))
        assert outbox(h) == [("a@shop.test", "kr", iso(tuesday))]
        wednesday = at("2026-03-04T10:00:00+09:00")  # inside: at once
        settle(h, wednesday - h.clock.now())
        ping(h, "c@shop.test")
        settle(h)
        assert outbox(h)[-1] == ("c@shop.test", "kr", iso(wednesday))
        settle(h, at("2026-03-06T19:00:00+09:00") - h.clock.now())  # Friday evening
        ping(h, "b@shop.test")
        settle(h)
        monday = at("2026-03-09T09:00:00+09:00")
        assert pending(h, "kr") == [("b@shop.test", iso(monday))]
        settle(h, monday - h.clock.now())
        assert outbox(h)[-1] == ("b@shop.test", "kr", iso(monday))


def test_window_across_dst_changes(tmp_path: Path) -> None:
    ny = "America/New_York"
    files = {
        "ny": automation("ny", on("ping"), extra=window("09:00", "17:00", ny)),
        "ny-wait": automation(
            "ny-wait", on("order"), extra="wait: 1d\n" + window("09:00", "17:00", ny)
        ),
        "gap": automation("gap", on("gap"), extra=window("02:30", "04:00", ny)),
        "fold": automation("fold", on("fold"), extra=window("01:30", "04:00", ny)),
    }
    write_repo(tmp_path, files)
    saturday = at("2026-03-07T10:00:00-05:00")  # EST; clocks go forward on Sunday 02:00
    with runner(tmp_path, saturday) as h:
        ping(h, "a@shop.test", "order")  # due 24 h later = Sunday 11:00 EDT (10:00 on the wall + 1)
        settle(h, at("2026-03-07T22:00:00-05:00") - saturday)
        ping(h, "b@shop.test")  # Saturday 22:00 EST: the window opens Sunday 09:00 EDT
        settle(h, at("2026-03-08T00:00:00-05:00") - h.clock.now())
        ping(h, "g@shop.test", "gap")  # Sunday 02:30 does not exist: the gap ends 03:00 EDT
        settle(h)
        sunday_open = at("2026-03-08T09:00:00-04:00")
        a_due = saturday + timedelta(days=1)
        gap_open = at("2026-03-08T03:00:00-04:00")
        assert pending(h, "ny") == [("b@shop.test", iso(sunday_open))]
        assert pending(h, "ny-wait") == [("a@shop.test", iso(a_due))]
        assert pending(h, "gap") == [("g@shop.test", iso(gap_open))]
        for instant in (gap_open, sunday_open, a_due):
            settle(h, instant - h.clock.now() - timedelta(seconds=1))
            sent = len(outbox(h))
            settle(h, timedelta(seconds=1))
            assert outbox(h)[sent:] == [(m[0], m[1], iso(instant)) for m in outbox(h)[sent:]]
            assert len(outbox(h)) == sent + 1
        assert outbox(h) == [
            ("g@shop.test", "gap", "2026-03-08T07:00:00Z"),
            ("b@shop.test", "ny", "2026-03-08T13:00:00Z"),
            ("a@shop.test", "ny-wait", "2026-03-08T15:00:00Z"),
        ]
        # clocks go back on 2026-11-01 02:00 EDT: 01:30 happens twice, the first one counts
        settle(h, at("2026-10-31T22:00:00-04:00") - h.clock.now())
        ping(h, "c@shop.test")
        ping(h, "f@shop.test", "fold")
        settle(h)
        assert pending(h, "ny") == [("c@shop.test", "2026-11-01T14:00:00Z")]  # 09:00 EST
        assert pending(h, "fold") == [("f@shop.test", "2026-11-01T05:30:00Z")]  # 01:30 EDT
        for moment in ("2026-11-01T05:30:00Z", "2026-11-01T14:00:00Z"):
            settle(h, at(moment) - h.clock.now() - timedelta(seconds=1))
            sent = len(outbox(h))
            settle(h, timedelta(seconds=1))
            assert len(outbox(h)) == sent + 1
        assert outbox(h)[3:] == [
            ("f@shop.test", "fold", "2026-11-01T05:30:00Z"),
            ("c@shop.test", "ny", "2026-11-01T14:00:00Z"),
        ]


def test_window_wrapping_past_midnight(tmp_path: Path) -> None:
    late = window("22:00", "02:00", "UTC", "mon")
    write_repo(tmp_path, {"late": automation("late", on("ping"), extra=late)})
    monday_night = at("2026-03-02T22:00:00Z")
    next_monday_night = at("2026-03-09T22:00:00Z")
    with runner(tmp_path, T0) as h:
        ping(h, "a@shop.test")  # Monday 09:00: waits for 22:00
        settle(h)
        assert pending(h, "late") == [("a@shop.test", iso(monday_night))]
        settle(h, monday_night - h.clock.now())
        settle(h, at("2026-03-03T01:00:00Z") - h.clock.now())
        ping(h, "b@shop.test")  # Tuesday 01:00: Monday's window is still open
        settle(h)
        assert outbox(h) == [
            ("a@shop.test", "late", iso(monday_night)),
            ("b@shop.test", "late", "2026-03-03T01:00:00Z"),
        ]
        settle(h, at("2026-03-03T02:00:00Z") - h.clock.now())
        ping(h, "c@shop.test")  # Tuesday 02:00: closed ([start, end))
        settle(h, at("2026-03-03T22:30:00Z") - h.clock.now())
        ping(h, "d@shop.test")  # Tuesday 22:30: no window opens on Tuesday
        settle(h)
        assert pending(h, "late") == [
            ("c@shop.test", iso(next_monday_night)),
            ("d@shop.test", iso(next_monday_night)),
        ]
        settle(h, next_monday_night - h.clock.now())
        assert outbox(h)[2:] == [
            ("c@shop.test", "late", iso(next_monday_night)),
            ("d@shop.test", "late", iso(next_monday_night)),
        ]


# --- 7. retrigger -------------------------------------------------------------------------


def test_retrigger_false_true_and_cooldown(tmp_path: Path) -> None:
    files = {
        "once": automation("once", on("ping")),
        "always": automation("always", on("ping"), extra="retrigger: true\n"),
        "cool": automation("cool", on("ping"), extra="retrigger: {cooldown: 1h}\n"),
    }
    write_repo(tmp_path, files)
    with runner(tmp_path, T0) as h:
        for minutes in (0, 30, 59, 61, 90, 125):
            settle(h, T0 + timedelta(minutes=minutes) - h.clock.now())
            ping(h, "a@shop.test")
            settle(h)
        minutes_of = {
            ident: [(at(m[2]) - T0) // timedelta(minutes=1) for m in outbox(h) if m[1] == ident]
            for ident in files
        }
        assert minutes_of == {
            "once": [0],
            "always": [0, 30, 59, 61, 90, 125],
            "cool": [0, 61, 125],  # 30 and 59 within 1h of 0; 90 within 1h of 61
        }
        assert cancelled(h, "cool") == []  # refused triggers create no send at all


# --- 8. repeat ----------------------------------------------------------------------------


def test_repeat_every_times_and_exit_on_ends_the_series(tmp_path: Path) -> None:
    extra = "wait: 1h\nrepeat: {every: 1d, times: 2}\nexit_on:\n  - event: purchase\n"
    write_repo(tmp_path, {"nudge": automation("nudge", on("ping"), extra=extra)})
    first, second, third = (T0 + timedelta(hours=1, days=k) for k in range(3))
    with runner(tmp_path, T0) as h:
        ping(h, "a@shop.test")
        ping(h, "b@shop.test")
        settle(h)
        settle(h, first - T0)
        settle(h, timedelta(hours=1))
        ping(h, "b@shop.test", "purchase")  # after B's first email
        settle(h)
        assert cancelled(h, "nudge") == [("b@shop.test", "exit_on")]
        assert pending(h, "nudge") == [("a@shop.test", iso(second))]
        settle(h, second - h.clock.now())
        assert pending(h, "nudge") == [("a@shop.test", iso(third))]
        settle(h, third - h.clock.now())
        settle(h, timedelta(days=10))
        assert outbox(h) == [
            ("a@shop.test", "nudge", iso(first)),
            ("b@shop.test", "nudge", iso(first)),
            ("a@shop.test", "nudge", iso(second)),
            ("a@shop.test", "nudge", iso(third)),
        ]
        series = [(s.email, s.repeat_index, s.status.value, s.reason) for s in sends(h, "nudge")]
        assert sorted(series) == [
            ("a@shop.test", 0, "sent", None),
            ("a@shop.test", 1, "sent", None),
            ("a@shop.test", 2, "sent", None),
            ("b@shop.test", 0, "sent", None),
            ("b@shop.test", 1, "cancelled", "exit_on"),
        ]


# --- 9. start_at and stop_at --------------------------------------------------------------


def status_history(h: Harness, ident: str) -> list[tuple[str, str]]:
    """(value, at) of the status entries in the API's history of an automation."""
    history = h.http.get(f"/v1/automations/{ident}").json()["history"]
    return [(e["value"], e["at"]) for e in history if e["kind"] == "status"]


def test_stop_at_stops_by_itself(tmp_path: Path) -> None:
    stop_at = T0 + timedelta(days=2)
    extra = f"stop_at: {iso(stop_at)}\nwait: 3d\n"
    write_repo(tmp_path, {"limited": automation("limited", on("ping"), extra=extra)})
    with runner(tmp_path, T0) as h:
        ping(h, "a@shop.test")
        settle(h, timedelta(days=1))
        ping(h, "b@shop.test")
        settle(h, stop_at - h.clock.now() - timedelta(seconds=1))
        assert [email for email, _ in pending(h, "limited")] == ["a@shop.test", "b@shop.test"]
        h.advance(timedelta(seconds=61))
        ping(h, "c@shop.test")  # received after stop_at, before the engine noticed the stop
        settle(h)
        assert cancelled(h, "limited") == [("a@shop.test", "stopped"), ("b@shop.test", "stopped")]
        assert [s.email for s in sends(h, "limited")] == ["a@shop.test", "b@shop.test"]
        assert status_history(h, "limited")[-1] == ("stopped", iso(stop_at))
        detail = h.http.get("/v1/automations/limited").json()
        assert detail["effective_status"] == "stopped"
        settle(h, timedelta(days=5))
        ping(h, "d@shop.test")
        settle(h)
        assert outbox(h) == []
        assert len(sends(h, "limited")) == 2


def test_scheduled_starts_at_start_at(tmp_path: Path) -> None:
    start_at = T0 + timedelta(days=1)
    extra = f"start_at: {iso(start_at)}\n"
    write_repo(
        tmp_path, {"launch": automation("launch", on("ping"), status="scheduled", extra=extra)}
    )
    with runner(tmp_path, T0) as h:
        settle(h, timedelta(hours=12))
        ping(h, "a@shop.test")
        h.advance(start_at - h.clock.now() - timedelta(seconds=1))
        ping(h, "b@shop.test")  # one second early; the engine first runs after the start
        settle(h, timedelta(minutes=1))
        assert sends(h, "launch") == []
        assert status_history(h, "launch") == [("scheduled", iso(T0)), ("running", iso(start_at))]
        ping(h, "a@shop.test")
        ping(h, "c@shop.test")
        settle(h)
        sent_at = iso(start_at + timedelta(seconds=59))
        assert outbox(h) == [
            ("a@shop.test", "launch", sent_at),
            ("c@shop.test", "launch", sent_at),
        ]


def test_stop_at_passed_while_the_runner_was_down(tmp_path: Path) -> None:
    stop_at = T0 + timedelta(days=2)
    extra = f"stop_at: {iso(stop_at)}\nwait: 1d\n"
    write_repo(tmp_path, {"limited": automation("limited", on("ping"), extra=extra)})
    with runner(tmp_path, T0) as h:
        ping(h, "a@shop.test")  # due T0+1d: while the runner is down, before stop_at
        settle(h, timedelta(hours=12))
        ping(h, "b@shop.test")
        settle(h)
    with runner(tmp_path, stop_at + timedelta(days=1)) as h:
        assert cancelled(h, "limited") == [("a@shop.test", "stopped"), ("b@shop.test", "stopped")]
        settle(h)
        assert outbox(h) == []
        assert status_history(h, "limited")[-1] == ("stopped", iso(stop_at))


# --- combined: a repeat that falls due while paused ---------------------------------------


def test_repeat_due_while_paused_is_cancelled_and_the_series_goes_on(tmp_path: Path) -> None:
    extra = "repeat: {every: 1d, times: 2}\n"
    write_repo(tmp_path, {"daily": automation("daily", on("ping"), extra=extra)})
    with runner(tmp_path, T0) as h:
        ping(h, "a@shop.test")
        settle(h)
        assert pending(h, "daily") == [("a@shop.test", iso(T0 + timedelta(days=1)))]
    edit(tmp_path, "daily", "status: running", "status: paused")
    with runner(tmp_path, T0 + timedelta(hours=12)) as h:
        settle(h)
    edit(tmp_path, "daily", "status: paused", "status: running")
    with runner(tmp_path, T0 + timedelta(days=1, hours=12)) as h:
        settle(h)
        assert cancelled(h, "daily") == [("a@shop.test", "paused")]
        assert pending(h, "daily") == [("a@shop.test", iso(T0 + timedelta(days=2)))]
        settle(h, timedelta(hours=12))
        assert outbox(h) == [
            ("a@shop.test", "daily", iso(T0)),
            ("a@shop.test", "daily", iso(T0 + timedelta(days=2))),
        ]


def test_retrigger_reanchors_an_active_series(tmp_path: Path) -> None:
    extra = "retrigger: true\nwait: 1h\nrepeat: {every: 1d, times: 1}\n"
    write_repo(tmp_path, {"nudge": automation("nudge", on("ping"), extra=extra)})
    with runner(tmp_path, T0) as h:
        ping(h, "a@shop.test")
        settle(h, timedelta(minutes=30))
        ping(h, "a@shop.test")  # before the first email: it moves, no extra email
        settle(h)
        anchor = T0 + timedelta(minutes=30)
        assert pending(h, "nudge") == [("a@shop.test", iso(anchor + timedelta(hours=1)))]
        assert cancelled(h, "nudge") == [("a@shop.test", "reanchored")]
        settle(h, timedelta(hours=1))
        settle(h, timedelta(hours=12))
        ping(h, "a@shop.test")  # re-anchors the outstanding repeat 1
        settle(h)
        anchor2 = h.clock.now()
        assert pending(h, "nudge") == [("a@shop.test", iso(anchor2 + timedelta(days=1, hours=1)))]
        settle(h, anchor2 + timedelta(days=1, hours=1) - h.clock.now())
        settle(h, timedelta(days=3))
        assert outbox(h) == [
            ("a@shop.test", "nudge", iso(anchor + timedelta(hours=1))),
            ("a@shop.test", "nudge", iso(anchor2 + timedelta(days=1, hours=1))),
        ]


def test_stop_at_passing_while_paused_cancels_as_stopped(tmp_path: Path) -> None:
    stop_at = T0 + timedelta(days=2)
    extra = f"stop_at: {iso(stop_at)}\nwait: 3d\n"
    write_repo(tmp_path, {"limited": automation("limited", on("ping"), extra=extra)})
    with runner(tmp_path, T0) as h:
        ping(h, "a@shop.test")
        settle(h)
    edit(tmp_path, "limited", "status: running", "status: paused")
    with runner(tmp_path, T0 + timedelta(days=1)) as h:
        settle(h)
        assert cancelled(h, "limited") == []
        settle(h, timedelta(days=1))
        assert cancelled(h, "limited") == [("a@shop.test", "stopped")]
        assert [v for v, _ in status_history(h, "limited")] == ["running", "paused", "stopped"]


def test_email_and_api_triggers_are_gated_while_paused(tmp_path: Path) -> None:
    api = automation("vip", "type: api")
    write_repo(tmp_path, {"product-intro": PRODUCT_INTRO, "coupon-after-open": COUPON, "vip": api})
    with runner(tmp_path, T0) as h:
        ping(h, "a@shop.test", "signup")
        settle(h)
    edit(tmp_path, "coupon-after-open", "status: running", "status: paused")
    edit(tmp_path, "vip", "status: running", "status: paused")
    with runner(tmp_path, T0 + timedelta(hours=1)) as h:
        open_email(h, message_id(h, "a@shop.test", "product-intro"))  # counted, but paused
        answer = h.http.post("/v1/automations/vip/trigger", json={"subscriber": "a@shop.test"})
        assert answer.json() == {"accepted": False, "reason": "not_running"}
        settle(h)
    edit(tmp_path, "coupon-after-open", "status: paused", "status: running")
    edit(tmp_path, "vip", "status: paused", "status: running")
    with runner(tmp_path, T0 + timedelta(hours=2)) as h:
        settle(h, timedelta(days=10))
        assert sends(h, "coupon-after-open") == [] and sends(h, "vip") == []
        assert outbox(h) == [("a@shop.test", "product-intro", iso(T0))]


def test_exit_on_in_the_same_batch_after_the_trigger_cancels(tmp_path: Path) -> None:
    extra = "wait: 1h\nexit_on:\n  - event: purchase\n"
    files = {
        "cart": automation("cart", on("cart.abandoned"), extra=extra),
        "hello": automation("hello", on("subscriber.added"), extra=extra),
    }
    write_repo(tmp_path, files)
    with runner(tmp_path, T0) as h:
        batch = [  # one commit: the three events share their received time
            {"id": "e1", "type": "cart.abandoned", "subscriber": {"email": "a@shop.test"}},
            {"id": "e2", "type": "purchase", "subscriber": {"email": "a@shop.test"}},
            {"id": "e3", "type": "purchase", "subscriber": {"email": "b@shop.test"}},
        ]
        assert h.http.post("/v1/events", json={"events": batch}).status_code == 202
        settle(h)
        # A's purchase came after both of A's triggers; B's purchase is what added B, and the
        # event that triggers a send never exits it.
        assert cancelled(h, "cart") == [("a@shop.test", "exit_on")]
        assert cancelled(h, "hello") == [("a@shop.test", "exit_on")]
        settle(h, timedelta(days=1))
        assert outbox(h) == [("b@shop.test", "hello", iso(T0 + timedelta(days=1)))]


def test_scheduled_started_early_or_cancelled_by_an_edit(tmp_path: Path) -> None:
    start_at = T0 + timedelta(days=2)
    extra = f"start_at: {iso(start_at)}\n"
    files = {
        "early": automation("early", on("ping"), status="scheduled", extra=extra),
        "called-off": automation("called-off", on("ping"), status="scheduled", extra=extra),
    }
    write_repo(tmp_path, files)
    with runner(tmp_path, T0) as h:
        ping(h, "a@shop.test")
        settle(h)
    edit(tmp_path, "early", "status: scheduled", "status: running")
    edit(tmp_path, "called-off", "status: scheduled", "status: draft")
    restart = T0 + timedelta(days=1)
    with runner(tmp_path, restart) as h:
        settle(h)
        assert status_history(h, "early")[-1] == ("running", iso(restart))
        ping(h, "b@shop.test")
        settle(h)
        settle(h, timedelta(days=2))  # past start_at: the draft stays a draft
        ping(h, "c@shop.test")
        settle(h)
        assert [v for v, _ in status_history(h, "called-off")] == ["scheduled", "draft"]
        assert outbox(h) == [
            ("b@shop.test", "early", iso(restart)),
            ("c@shop.test", "early", iso(restart + timedelta(days=2))),
        ]
