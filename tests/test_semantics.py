"""Cross-file rules over one repository state (docs/rules.md), judged at a fixed instant."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from runner.checking.semantics import cross_file_findings
from runner.core.config import Config, OutboxProvider
from runner.core.loader import Loaded, load_automation
from runner.core.model import Automation
from runner.core.version import Version

NOW = datetime(2026, 6, 1, tzinfo=UTC)
PAST = "2026-05-01T00:00:00Z"
FUTURE = "2026-07-01T00:00:00Z"
EMAIL = 'email:\n  from: "S <s@shop.test>"\n  subject: Hi\n  text: Hello\n'
Row = tuple[str, str, int, int]


def auto(
    ident: str,
    trigger: str = "type: event\n  event: subscriber.added",
    *,
    status: str = "running",
    extra: str = "",
) -> str:
    """Automation text: id line 1, status line 2, `extra` from line 3, then the trigger."""
    return f"id: {ident}\nstatus: {status}\n{extra}trigger:\n  {trigger}\n{EMAIL}"


def on(source: str, action: str = "opened") -> str:
    return f"type: email\n  action: {action}\n  automation: {source}"


def check(files: dict[str, str], config: Config | None = None) -> list[Row]:
    loaded: dict[str, Loaded[Automation]] = {
        path: load_automation(path, text.encode()) for path, text in files.items()
    }
    versions: dict[str, Version] = {}
    broken = {"broken"}  # the one fixture that is meant not to load
    assert all(not item.findings for p, item in loaded.items() if path_stem(p) not in broken)
    for item in sorted(loaded.values(), key=lambda item: item.path):
        if item.model is not None:
            versions.setdefault(item.model.id, Version.of(item, {}))
    found = cross_file_findings(loaded, versions, config or Config(), NOW)
    for finding in found:
        item = loaded[finding.path]
        assert item.model is not None and finding.automation == item.model.id
    return sorted((f.path, f.rule, f.line, f.col) for f in found)


def path_stem(repo_path: str) -> str:
    return repo_path.rsplit("/", 1)[-1].removesuffix(".yaml")


def path(ident: str) -> str:
    return f"automations/{ident}.yaml"


def repo(*texts: str) -> dict[str, str]:
    return {path(text.split("\n", 1)[0].removeprefix("id: ")): text for text in texts}


def test_a_consistent_tree_has_no_findings() -> None:
    assert check(repo(auto("intro"), auto("coupon", on("intro")))) == []


def test_id_must_equal_the_file_stem() -> None:
    assert check({"automations/growth/welcome.yaml": auto("hello")}) == [
        ("automations/growth/welcome.yaml", "id-mismatch", 1, 5)
    ]


def test_duplicate_ids_are_reported_on_every_file_after_the_first() -> None:
    files = {
        "automations/a/welcome.yaml": auto("welcome"),
        "automations/b/welcome.yaml": auto("welcome"),
        "automations/c/welcome.yaml": auto("welcome"),
    }
    loaded = {p: load_automation(p, t.encode()) for p, t in files.items()}
    found = cross_file_findings(loaded, {}, Config(), NOW)
    assert [(f.path, f.rule, f.line, f.col) for f in found] == [
        ("automations/b/welcome.yaml", "id-duplicate", 1, 5),
        ("automations/c/welcome.yaml", "id-duplicate", 1, 5),
    ]
    assert all("automations/a/welcome.yaml" in f.message for f in found)


def test_email_trigger_must_name_an_existing_automation() -> None:
    assert check(repo(auto("coupon", on("nowhere")))) == [
        (path("coupon"), "unknown-automation", 6, 15)
    ]


def test_a_source_that_fails_to_load_still_exists() -> None:
    files = repo(auto("coupon", on("broken")))
    files[path("broken")] = "id: broken\nstatus: running\n"
    assert check(files) == []


def test_provider_must_be_declared() -> None:
    assert check(repo(auto("a", extra="provider: marketing\n"))) == [
        (path("a"), "unknown-provider", 3, 11)
    ]
    config = Config(providers={"bulk": OutboxProvider(type="outbox")})
    assert check(repo(auto("a", extra="provider: bulk\n")), config) == []
    assert check(repo(auto("b")), config) == [(path("b"), "unknown-provider", 1, 1)]


def test_an_email_trigger_cycle_with_a_retrigger_is_an_error_on_each_member() -> None:
    files = repo(
        auto("a", on("b"), extra="retrigger: {cooldown: 1h}\n"),
        auto("b", on("c")),
        auto("c", on("a")),
        auto("tail", on("a")),
    )
    assert check(files) == [
        (path("a"), "email-trigger-cycle", 7, 15),
        (path("b"), "email-trigger-cycle", 6, 15),
        (path("c"), "email-trigger-cycle", 6, 15),
    ]


def test_a_self_trigger_with_retrigger_is_a_cycle() -> None:
    assert check(repo(auto("a", on("a", "sent"), extra="retrigger: true\n"))) == [
        (path("a"), "email-trigger-cycle", 7, 15)
    ]


def test_a_cycle_where_nobody_retriggers_is_allowed() -> None:
    assert check(repo(auto("a", on("b")), auto("b", on("a"), extra="retrigger: false\n"))) == []


@pytest.mark.parametrize(
    "source",
    [auto("src", status="stopped"), auto("src", extra=f"stop_at: {PAST}\n")],
    ids=["written", "effective"],
)
def test_listening_to_a_stopped_source_warns(source: str) -> None:
    assert check(repo(source, auto("follower", on("src")))) == [
        (path("follower"), "source-stopped", 6, 15),
        *([(path("src"), "stale-status", 2, 9)] if "stop_at" in source else []),
    ]


def test_a_stopped_follower_is_not_warned_about_its_source() -> None:
    assert check(repo(auto("src", status="stopped"), auto("f", on("src"), status="stopped"))) == []


@pytest.mark.parametrize(
    ("status", "extra", "warns"),
    [
        ("draft", "", True),
        ("paused", "", True),
        ("scheduled", f"start_at: {FUTURE}\n", True),
        ("running", "", False),
        ("stopped", "", False),
    ],
)
def test_a_follower_not_running_while_its_source_runs_warns(
    status: str, extra: str, warns: bool
) -> None:
    found = check(repo(auto("src"), auto("f", on("src"), status=status, extra=extra)))
    assert found == ([(path("f"), "source-not-running", 2, 9)] if warns else [])


def test_a_follower_of_a_source_that_is_not_running_is_not_warned() -> None:
    assert check(repo(auto("src", status="draft"), auto("f", on("src"), status="draft"))) == []


def test_scheduled_start_at_passed_warns() -> None:
    for start in (PAST, NOW.isoformat()):
        assert check(repo(auto("a", status="scheduled", extra=f"start_at: {start}\n"))) == [
            (path("a"), "start-at-passed", 3, 11)
        ]
    assert check(repo(auto("a", status="scheduled", extra=f"start_at: {FUTURE}\n"))) == []


@pytest.mark.parametrize("status", ["running", "paused"])
def test_stale_status_after_stop_at(status: str) -> None:
    assert check(repo(auto("a", status=status, extra=f"stop_at: {PAST}\n"))) == [
        (path("a"), "stale-status", 2, 9)
    ]


def test_scheduled_past_both_times_warns_twice() -> None:
    extra = f"start_at: 2026-01-01T00:00:00Z\nstop_at: {PAST}\n"
    assert check(repo(auto("a", status="scheduled", extra=extra))) == [
        (path("a"), "stale-status", 2, 9),
        (path("a"), "start-at-passed", 3, 11),
    ]


def test_findings_have_the_rule_severity() -> None:
    files = repo(auto("a", status="scheduled", extra=f"start_at: {PAST}\n"))
    loaded = {p: load_automation(p, t.encode()) for p, t in files.items()}
    [finding] = cross_file_findings(loaded, {}, Config(), NOW)
    assert finding.severity == "warning" and finding.automation == "a"


PURCHASE = "type: event\n  event: purchase"


def test_too_many_unconditioned_automations_on_one_event_warn_on_each() -> None:
    files = repo(*(auto(f"p{i}", PURCHASE) for i in range(4)))
    assert check(files) == [(path(f"p{i}"), "too-many-emails", 5, 10) for i in range(4)]
    del files[path("p3")]
    assert check(files) == []


def test_too_many_emails_ignores_conditioned_and_not_running_automations() -> None:
    files = repo(
        *(auto(f"p{i}", PURCHASE) for i in range(3)),
        auto("vip", PURCHASE, extra="audience: {in_group: vip}\n"),
        auto("big", PURCHASE + "\n  where: {field: event.data.total, op: gt, value: 9}"),
        auto("held", PURCHASE, status="paused"),
        auto("later", PURCHASE, status="scheduled", extra=f"start_at: {FUTURE}\n"),
        auto("other", "type: event\n  event: cart.abandoned"),
    )
    assert check(files) == []


def test_too_many_emails_counts_started_schedules_groups_and_the_configured_limit() -> None:
    joined = "type: event\n  event: group.joined\n  group: "
    files = repo(
        auto("a", joined + "vip"),
        auto("b", joined + "vip", status="scheduled", extra=f"start_at: {PAST}\n"),
        auto("c", joined + "staff"),
    )
    found = check(files, Config(max_emails_per_day=1))
    assert [row for row in found if row[1] == "too-many-emails"] == [
        (path("a"), "too-many-emails", 5, 10),
        (path("b"), "too-many-emails", 6, 10),
    ]


def test_a_chain_walked_into_a_cycle_reports_only_the_cycle() -> None:
    files = repo(
        auto("b", on("p")),
        auto("p", on("q"), extra="retrigger: true\n"),
        auto("q", on("p")),
        auto("z", on("b")),
    )
    assert [row[0] for row in check(files)] == [path("p"), path("q")]
