"""The `daily-volume` lint: the worst day one subscriber can have, with the chain that fills it."""

from __future__ import annotations

from datetime import UTC, datetime

from runner.checking.semantics import cross_file_findings
from runner.checking.volume import Group, daily_volumes, worst_day
from runner.core.config import Config
from runner.core.loader import Loaded, load_automation
from runner.core.model import Automation
from runner.core.version import Version

NOW = datetime(2026, 6, 1, tzinfo=UTC)
EMAIL = 'email:\n  from: "S <s@shop.test>"\n  subject: Hi\n  text: Hello\n'
ADDED = "type: event\n  event: subscriber.added"


def auto(ident: str, trigger: str = ADDED, extra: str = "") -> str:
    return f"id: {ident}\nstatus: running\n{extra}trigger:\n  {trigger}\n{EMAIL}"


def on(source: str, action: str = "sent") -> str:
    return f"type: email\n  action: {action}\n  automation: {source}"


def volume_findings(*texts: str, limit: int = 3) -> list[tuple[str, str]]:
    loaded: dict[str, Loaded[Automation]] = {}
    for text in texts:
        ident = text.split("\n", 1)[0].removeprefix("id: ")
        loaded[f"automations/{ident}.yaml"] = load_automation(
            f"automations/{ident}.yaml", text.encode()
        )
    assert all(not item.findings for item in loaded.values())
    versions = {
        item.model.id: Version.of(item, {}) for item in loaded.values() if item.model is not None
    }
    found = cross_file_findings(loaded, versions, Config(max_emails_per_day=limit), NOW)
    return sorted((f.path, f.message) for f in found if f.rule == "daily-volume")


CHAIN = (
    auto("welcome"),
    auto("tips", on("welcome")),
    auto("offer", on("tips")),
    auto("survey", on("offer")),
)


def test_a_chain_over_the_cap_warns_on_each_member_naming_the_chain() -> None:
    found = volume_findings(*CHAIN)
    assert [path for path, _ in found] == [
        f"automations/{i}.yaml" for i in ("offer", "survey", "tips", "welcome")
    ]
    message = found[0][1]
    assert message.startswith("one subscriber can get 4 emails in one day from the ")
    assert "welcome → tips → offer → survey" in message
    assert "max_emails_per_day: 3" in message


def test_the_same_chain_spread_out_by_waits_or_under_a_higher_cap_is_quiet() -> None:
    spread = (CHAIN[0], CHAIN[1], auto("offer", on("tips"), "wait: 1d\n"), CHAIN[3])
    assert volume_findings(*spread) == []
    assert volume_findings(*CHAIN, limit=4) == []


def test_repeats_count_and_a_window_can_bunch_them() -> None:
    hourly = auto("nag", extra="repeat: {every: 1h, times: 3}\n")
    assert "4 emails" in volume_findings(hourly)[0][1]
    # One `subscriber.added`: nag and its three repeats, the follower of nag, and thanks.
    message = volume_findings(hourly, auto("thanks"), auto("follow", on("nag")))[0][1]
    assert "get 6 emails in one day" in message
    assert message.endswith(": nag (x4) → follow; thanks (max_emails_per_day: 3)")
    daily = auto("daily", extra="repeat: {every: 1d, times: 5}\n")
    assert volume_findings(daily) == []
    # Daily repeats held back by a window that opens once a week land on the same day.
    weekly = auto(
        "weekly",
        extra="repeat: {every: 1d, times: 5}\nsend_window: {days: [mon], start: '09:00', "
        "end: '10:00'}\n",
    )
    assert "6 emails" in volume_findings(weekly)[0][1]


def test_a_schedule_counts_its_ticks_in_a_day() -> None:
    hourly = auto("pulse", "type: schedule\n  cron: '0 * * * *'")
    assert "24 emails in one day from the schedule of `pulse`" in volume_findings(hourly)[0][1]
    assert volume_findings(auto("digest", "type: schedule\n  cron: '0 8 * * mon'")) == []


def test_retrigger_on_every_open_has_no_limit_and_once_ever_is_one() -> None:
    source = auto("pulse", "type: schedule\n  cron: '0 */6 * * *'")
    again = auto("again", on("pulse", "opened"), "retrigger: true\n")
    first, _ = volume_findings(source, again, limit=10)
    assert "any number of emails" in first[1] and "retrigger: true" in first[1]
    once = auto("again", on("pulse", "opened"))
    assert volume_findings(source, once, limit=5) == []  # 4 ticks + 1 follow-up
    assert "5 emails" in volume_findings(source, once, limit=4)[0][1]


def test_conditioned_and_not_running_automations_are_left_out() -> None:
    conditioned = auto("survey", on("offer"), "audience: {in_group: vip}\n")
    assert volume_findings(CHAIN[0], CHAIN[1], CHAIN[2], conditioned) == []
    paused = CHAIN[3].replace("status: running", "status: paused")
    assert volume_findings(CHAIN[0], CHAIN[1], CHAIN[2], paused) == []


def test_worst_day_moves_free_triggers_together() -> None:
    # Two entries whose triggers may come any time after 2 days: the worst day holds both.
    groups = [
        Group(("a",), 0, 0, (0.0,), 0.0),
        Group(("a", "b"), 2 * 86_400, float("inf"), (0.0, 3600.0), 0.0),
    ]
    count, chains = worst_day(groups)
    assert count == 2 and chains == ((("a", "b"), 2),)


def test_each_source_is_judged_alone() -> None:
    models = {}
    for text in (auto("a"), auto("b", "type: api")):
        item = load_automation("x.yaml", text.encode())
        assert item.model is not None
        models[item.model.id] = item.model
    sources = sorted((v.source, v.count) for v in daily_volumes(models, NOW, "UTC"))
    assert sources == [("an API call to `b`", 1), ("the `subscriber.added` event", 1)]
