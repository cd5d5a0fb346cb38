"""Every finding of a file in one run: no fault hides another, and none is reported twice.

Expected lines are marked in the YAML with `# <- rule` comments, so a case reads
as the file a user would write and says what each line is wrong about.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from runner.checking.tree import Tree, TreeChecker
from runner.core.loader import load_automation, load_config
from runner.core.salvage import MAX_BAD
from runner.repo.snapshot import MemorySnapshot

NOW = datetime(2026, 6, 1, tzinfo=UTC)
MARK = re.compile(r"# <- ([a-z-]+(?: [a-z-]+)*)")


def marked(path: str, text: str) -> list[tuple[str, int, str]]:
    """(path, line, rule) for every `# <- rule [rule...]` mark of `text`."""
    found: list[tuple[str, int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        match = MARK.search(line)
        if match:
            found.extend((path, number, rule) for rule in match.group(1).split())
    return sorted(found)


def check(files: dict[str, str]) -> Tree:
    return TreeChecker().check(
        MemorySnapshot({path: text.encode() for path, text in files.items()}), NOW
    )


def located(tree: Tree) -> list[tuple[str, int, str]]:
    return sorted((f.path, f.line, f.rule) for f in tree.findings)


FOUR_FAULTS = """\
id: four-faults  # <- id-mismatch
status: running
labels: {vip: yes}  # <- yaml-boolean
trigger:
  type: event
  event: purchase
  colour: red  # <- schema
  where: {field: customer.total, op: gt, value: 10}  # <- invalid-field-path
email:
  from: "not an email"  # <- email-body-required invalid-address
  subject: Hi
"""


def test_all_four_rounds_of_faults_are_found_in_one_run() -> None:
    path = "automations/wrong-name.yaml"
    tree = check({path: FOUR_FAULTS})
    assert located(tree) == marked(path, FOUR_FAULTS)
    by_rule = {f.rule: f for f in tree.findings}
    assert (by_rule["yaml-boolean"].line, by_rule["yaml-boolean"].col) == (3, 15)
    assert (by_rule["schema"].line, by_rule["schema"].col) == (7, 3)
    assert (by_rule["invalid-field-path"].line, by_rule["invalid-field-path"].col) == (8, 18)
    assert (by_rule["invalid-address"].line, by_rule["invalid-address"].col) == (10, 9)
    assert by_rule["id-mismatch"].automation == "four-faults"
    assert tree.versions == {}
    assert "wrong-name" in tree.invalid_files()  # an invalid file is known by its name


def test_the_loader_alone_finds_the_first_rounds_together() -> None:
    loaded = load_automation("automations/wrong-name.yaml", FOUR_FAULTS.encode())
    assert loaded.model is None
    rules = sorted(f.rule for f in loaded.findings)
    assert rules == ["email-body-required", "invalid-field-path", "schema", "yaml-boolean"]
    assert loaded.partial is not None and loaded.partial.id == "four-faults"
    assert ("trigger", "where") in loaded.dropped
    assert loaded.readable("id") and not loaded.readable("trigger", "where", "field")


def test_a_schema_error_and_a_missing_template_are_both_found() -> None:
    text = """\
id: promo
status: running
wait: 3x  # <- invalid-duration
trigger: {type: api}
email:
  from: Shop <news@shop.test>
  subject: "Hi {{ subscriber.email"  # <- template-syntax
  html_file: ../templates/nope.html  # <- template-missing
"""
    path = "automations/promo.yaml"
    tree = check({path: text})
    assert located(tree) == marked(path, text)
    assert tree.template_users == {"templates/nope.html": {path}}


def test_template_file_problems_of_an_invalid_file_are_found() -> None:
    text = """\
id: promo
status: sometimes  # <- schema
trigger: {type: api}
email: {from: news@shop.test, subject: Hi, html_file: ../templates/promo.html}
"""
    template = "<p>{{ nobody }}</p>\n<p>{% if %}</p>\n"
    tree = check({"automations/promo.yaml": text, "templates/promo.html": template})
    found = located(tree)
    assert ("automations/promo.yaml", 2, "schema") in found
    assert [f for f in found if f[0] == "templates/promo.html"] == [
        ("templates/promo.html", 2, "template-syntax")
    ]


def test_no_finding_repeats_a_value_an_earlier_finding_is_about() -> None:
    text = """\
id: joined
status: yes  # <- yaml-boolean
start_at: 2026-13-01T09:00:00Z  # <- schema
trigger:
  type: event
  event: group.joined
  group: ""  # <- schema
email: {from: ab, subject: Hi, text: Hello}  # <- schema
"""
    path = "automations/joined.yaml"
    tree = check({path: text})
    # no schema error for `status: yes`, no trigger-group for the dropped group, no
    # invalid-address for the `from` already too short, no start-at-required
    assert located(tree) == marked(path, text)


def test_rules_between_kept_keys_still_run_next_to_schema_errors() -> None:
    text = """\
id: both
status: scheduled  # <- start-at-required
trigger:
  type: event
  event: subscriber.deleted  # <- trigger-never-sends
  group: vip  # <- trigger-group
  extra: 1  # <- schema
send_window: {start: "09:00", end: "09:00"}  # <- window-empty
email:
  from: news@shop.test
  subject: Hi
  html: <p>Hi</p>
  html_file: a.html  # <- email-body-conflict template-missing
  colour: red  # <- schema
"""
    path = "automations/both.yaml"
    tree = check({path: text})
    assert located(tree) == marked(path, text)


def test_an_unparsed_id_is_never_compared_with_the_file_name() -> None:
    text = (
        "id: Not An Id  # <- schema\nstatus: draft\ntrigger: {type: api}\n"
        "email: {}  # <- schema schema email-body-required\n"
    )
    path = "automations/x.yaml"
    tree = check({path: text})
    assert located(tree) == marked(path, text)
    assert all(f.automation is None for f in tree.findings)


def test_references_of_an_invalid_file_are_checked_without_touching_valid_files() -> None:
    valid = (
        "id: shared\nstatus: running\ntrigger: {type: api}\n"
        "email: {from: news@shop.test, subject: Hi, text: Hi}\n"
    )
    broken = """\
id: shared  # <- id-mismatch id-duplicate
status: running
wait: soon  # <- invalid-duration
provider: nowhere  # <- unknown-provider
trigger: {type: email, action: opened, automation: ghost}  # <- unknown-automation
email: {from: news@shop.test, subject: Hi, text: Hi}
"""
    tree = check({"automations/a-shared.yaml": broken, "automations/shared.yaml": valid})
    assert located(tree) == marked("automations/a-shared.yaml", broken)
    assert set(tree.versions) == {"shared"}
    assert tree.versions["shared"].path == "automations/shared.yaml"


def test_a_reference_to_an_invalid_file_is_not_unknown() -> None:
    source = "id: source\nstatus: draft\nwait: soon  # <- invalid-duration\n"
    listener = (
        "id: listener\nstatus: draft\ntrigger: {type: email, action: opened, automation: source}\n"
        "wait: later  # <- invalid-duration\nemail: {from: a@shop.test, subject: Hi, text: Hi}\n"
    )
    tree = check({"automations/source.yaml": source, "automations/listener.yaml": listener})
    assert ("automations/listener.yaml", 4, "invalid-duration") in located(tree)
    assert "unknown-automation" not in {f.rule for f in tree.findings}


def test_findings_are_never_duplicated() -> None:
    tree = check({"automations/wrong-name.yaml": FOUR_FAULTS})
    keys = [(f.path, f.line, f.col, f.rule) for f in tree.findings]
    assert len(keys) == len(set(keys))


def test_the_configuration_reports_a_boolean_word_and_schema_errors_together() -> None:
    text = "timezone: Mars/Base\nmax_emails_per_day: off\nunknown: 1\n"
    loaded = load_config("postwright.yaml", text.encode())
    assert loaded.model is None
    assert sorted((f.line, f.rule) for f in loaded.findings) == [
        (1, "invalid-timezone"),
        (2, "yaml-boolean"),
        (3, "schema"),
    ]


def test_an_incremental_check_of_invalid_files_equals_a_full_check() -> None:
    before_files = {"automations/wrong-name.yaml": FOUR_FAULTS.encode()}
    checker = TreeChecker()
    before = checker.check(MemorySnapshot(before_files), NOW)
    fixed = FOUR_FAULTS.replace("{vip: yes}", '{vip: "yes"}').encode()
    after = MemorySnapshot({"automations/wrong-name.yaml": fixed})
    incremental = checker.check(
        after, NOW, previous=before, changed=["automations/wrong-name.yaml"]
    )
    assert incremental.findings == TreeChecker().check(after, NOW).findings
    assert "yaml-boolean" not in {f.rule for f in incremental.findings}


def test_a_file_with_a_flood_of_errors_reports_them_all_without_salvage() -> None:
    labels = "".join(f"  k{i}: [1]\n" for i in range(MAX_BAD + 1))
    text = "id: x\nstatus: draft\ntrigger: {type: api}\nemail: {from: a, subject: s}\nlabels:\n"
    loaded = load_automation("automations/x.yaml", (text + labels).encode())
    assert len(loaded.findings) == MAX_BAD + 2  # every label, and `from` too short
    assert loaded.partial is None  # too many problems to check the rest on
