"""The loader: every problem of an automation or configuration file, at its line and column.

Expected lines are marked in the YAML itself with a `# <-` comment, so a case
reads as the file a user would write.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.core.findings import Finding
from runner.core.loader import Loaded, load_automation, load_config
from runner.core.model import Automation

PATH = "automations/x.yaml"
MARK = "# <-"

HEAD = "id: x\nstatus: draft\n"
API = "trigger:\n  type: api\n"
EMAIL = "email:\n  from: Shop <news@shop.example>\n  subject: Hi\n  text: Hello\n"


def doc(extra: str = "", *, head: str = HEAD, trigger: str = API, email: str = EMAIL) -> str:
    return head + trigger + email + extra


def marked_line(text: str) -> int:
    lines = [number for number, line in enumerate(text.splitlines(), 1) if MARK in line]
    assert len(lines) == 1, "mark exactly one line"
    return lines[0]


def load(text: str) -> Loaded[Automation]:
    return load_automation(PATH, text.encode())


def refused(text: str) -> list[Finding]:
    loaded = load(text)
    assert loaded.model is None
    assert loaded.findings
    return list(loaded.findings)


def valid(text: str) -> Automation:
    loaded = load(text)
    assert loaded.findings == ()
    assert loaded.model is not None
    return loaded.model


def assert_one(text: str, rule: str, col: int | None = None) -> Finding:
    found = refused(text)
    assert [(f.rule, f.line) for f in found] == [(rule, marked_line(text))], found
    if col is not None:
        assert found[0].col == col
    assert found[0].path == PATH
    return found[0]


# --- the YAML layer, seen through the loader --------------------------------------


def test_minimal_automation_is_valid() -> None:
    model = valid(doc())
    assert model.id == "x"


def test_duplicate_key_at_top_level() -> None:
    assert_one(doc("id: y  # <-\n"), "yaml-duplicate-key", col=1)


def test_duplicate_key_nested_in_trigger() -> None:
    text = doc(trigger="trigger:\n  type: event\n  event: a\n  event: b  # <-\n")
    assert_one(text, "yaml-duplicate-key", col=3)


def test_duplicate_key_nested_in_a_condition_list() -> None:
    text = doc("audience:\n  any:\n    - {in_group: a, in_group: b}  # <-\n")
    assert_one(text, "yaml-duplicate-key", col=21)


@pytest.mark.parametrize("word", ["no", "on", "yes", "off"])
def test_yaml_1_1_boolean_values(word: str) -> None:
    assert_one(doc(f"retrigger: {word}  # <-\n"), "yaml-boolean", col=12)


@pytest.mark.parametrize("word", ["no", "on", "yes", "off"])
def test_yaml_1_1_boolean_keys(word: str) -> None:
    assert_one(doc(f"labels:\n  {word}: x  # <-\n"), "yaml-boolean", col=3)


def test_on_as_a_top_level_key() -> None:
    assert_one(doc("on:  # <-\n  event: purchase\n"), "yaml-boolean", col=1)


def test_str_tag_makes_a_boolean_word_a_string() -> None:
    model = valid(doc("name: !!str no\ndescription: !!str off\n"))
    assert (model.name, model.description) == ("no", "off")


@pytest.mark.parametrize(
    "tagged",
    ["!!python/object/apply:os.system ['true']", "!foo x", "!!str [a]", "!!timestamp 2026-01-01"],
)
def test_custom_tags(tagged: str) -> None:
    assert_one(doc(f"name: {tagged}  # <-\n"), "yaml-tag", col=7)


def test_anchor_and_alias() -> None:
    text = doc("name: &n Welcome  # <-\ndescription: *n\n")
    assert_one(text, "yaml-anchor", col=7)


def test_alias_without_anchor() -> None:
    assert_one(doc("description: *n  # <-\n"), "yaml-anchor", col=14)


def test_alias_bomb_is_refused_fast() -> None:
    rows = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    rows += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]" for n in range(1, 10)]
    bomb = doc("labels:\n" + "".join(f"  {row}\n" for row in rows))
    started = time.perf_counter()
    found = refused(bomb)
    assert time.perf_counter() - started < 0.1
    assert [(f.rule, f.line, f.col) for f in found] == [("yaml-anchor", 10, 7)]


def test_file_over_one_mebibyte() -> None:
    text = doc("description: " + "x" * (1 << 20) + "\n")
    found = refused(text)
    assert [(f.rule, f.line, f.col) for f in found] == [("file-too-large", 1, 1)]


def test_nesting_deeper_than_64_in_audience() -> None:
    deep = "{not: " * 70 + "{in_group: a}" + "}" * 70
    found = refused(doc(f"audience: {deep}\n"))
    assert [(f.rule, f.line) for f in found] == [("yaml-too-deep", 9)]


def test_invalid_utf8() -> None:
    loaded = load_automation(PATH, doc().encode() + b"name: caf\xe9\n")
    assert loaded.model is None
    assert [(f.rule, f.line, f.col) for f in loaded.findings] == [("file-encoding", 1, 1)]


def test_syntax_error_with_position() -> None:
    found = refused(doc("labels: {team: growth\nwait: 1d\n"))
    assert [(f.rule, f.line, f.col) for f in found] == [("yaml-syntax", 10, 5)]


def test_multiple_documents() -> None:
    assert_one(doc("---  # <-\n") + doc(), "yaml-multiple-documents", col=1)


@pytest.mark.parametrize("text", ["", "\n", "# nothing\n"])
def test_empty_file_is_a_clear_error(text: str) -> None:
    found = refused(text)
    assert [(f.rule, f.line, f.col) for f in found] == [("schema", 1, 1)]


@pytest.mark.parametrize("text", ["hello\n", "- id: x\n"])
def test_top_level_that_is_not_a_mapping(text: str) -> None:
    found = refused(text)
    assert [(f.rule, f.line) for f in found] == [("schema", 1)]


# --- times, dates and datetimes written without quotes -------------------------------


def test_unquoted_times_in_a_send_window() -> None:
    model = valid(doc("send_window:\n  start: 9:00\n  end: 22:00\n  timezone: Asia/Seoul\n"))
    assert model.send_window is not None
    assert (model.send_window.start, model.send_window.end) == ("09:00", "22:00")


def test_unquoted_time_in_a_date_trigger() -> None:
    trigger = "trigger:\n  type: date\n  field: subscriber.fields.birthday\n  at: 7:30\n"
    model = valid(doc(trigger=trigger))
    assert model.trigger.type == "date"
    assert model.trigger.at == "07:30"


def test_unquoted_datetime_with_offset() -> None:
    head = "id: x\nstatus: scheduled\nstart_at: 2026-12-01T09:00:00+09:00\n"
    model = valid(doc(head=head))
    assert model.start_at == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)


def test_unquoted_date_alone_is_a_clear_error() -> None:
    head = "id: x\nstatus: scheduled\nstart_at: 2026-12-01  # <-\n"
    finding = assert_one(doc(head=head), "datetime-offset", col=11)
    assert "start_at" in finding.message


def test_datetime_without_offset() -> None:
    head = "id: x\nstatus: scheduled\nstart_at: 2026-12-01T09:00:00  # <-\n"
    assert_one(doc(head=head), "datetime-offset", col=11)


def test_stop_at_without_offset() -> None:
    assert_one(doc("stop_at: '2027-01-01 00:00'  # <-\n"), "datetime-offset", col=10)


def test_datetime_that_is_not_a_datetime() -> None:
    finding = assert_one(doc("stop_at: soon  # <-\n"), "schema", col=10)
    assert "stop_at" in finding.message


# --- unknown keys, with the key's own line ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "col", "dotted"),
    [
        (doc("colour: red  # <-\n"), 1, "colour"),
        (doc(trigger="trigger:\n  type: api\n  event: x  # <-\n"), 3, "trigger.event"),
        (doc("  bcc: a@b.c  # <-\n"), 3, "email.bcc"),
        (
            doc("send_window:\n  start: '09:00'\n  end: '18:00'\n  tz: UTC  # <-\n"),
            3,
            "send_window.tz",
        ),
        (doc("exit_on:\n  - event: purchase\n    when: now  # <-\n"), 5, "exit_on.0.when"),
        (doc("repeat:\n  every: 1w\n  times: 2\n  count: 3  # <-\n"), 3, "repeat.count"),
        (
            doc(
                trigger="trigger:\n  type: email\n  action: clicked\n  automation: src\n"
                "  url: https://a.b  # <-\n"
            ),
            3,
            "trigger.url",
        ),
    ],
    ids=["top", "trigger", "email", "send_window", "exit_on", "repeat", "email-trigger"],
)
def test_unknown_key(text: str, col: int, dotted: str) -> None:
    finding = assert_one(text, "schema", col=col)
    assert finding.message == f"unknown key `{dotted}`"


def test_unknown_key_in_an_event_trigger() -> None:
    text = doc(trigger="trigger:\n  type: event\n  event: purchase\n  bogus: 1  # <-\n")
    assert assert_one(text, "schema", col=3).message == "unknown key `trigger.bogus`"


def test_unknown_key_in_a_group_condition() -> None:
    text = doc("audience:\n  in_group: vip\n  bogus: 1  # <-\n")
    assert assert_one(text, "schema", col=3).message == "unknown key `audience.bogus`"


def test_unknown_key_in_a_nested_field_condition() -> None:
    text = doc(
        "audience:\n  all:\n    - field: subscriber.fields.plan\n      op: eq\n"
        "      value: pro\n      typo: 1  # <-\n"
    )
    finding = assert_one(text, "schema", col=7)
    assert finding.message == "unknown key `audience.all.0.typo`"


def test_unknown_key_in_a_not_condition() -> None:
    text = doc("audience:\n  not:\n    in_group: staff\n  also: 1  # <-\n")
    assert assert_one(text, "schema", col=3).message == "unknown key `audience.also`"


def test_condition_with_no_known_key() -> None:
    text = doc("audience:\n  group: vip  # <-\n")
    assert assert_one(text, "schema").message.startswith("`audience`")


def test_several_unknown_keys_are_all_reported() -> None:
    text = doc("colour: red\nsize: 3\n")
    found = refused(text)
    assert [(f.rule, f.line, f.message) for f in found] == [
        ("schema", 9, "unknown key `colour`"),
        ("schema", 10, "unknown key `size`"),
    ]


def test_missing_required_key_names_itself() -> None:
    found = refused("id: x\nstatus: draft\n" + EMAIL)
    assert [(f.rule, f.message) for f in found] == [("schema", "missing required key `trigger`")]


# --- pydantic errors through discriminated unions -------------------------------------


def test_email_trigger_with_a_bad_within() -> None:
    trigger = (
        "trigger:\n  type: email\n  action: not_opened\n  automation: src\n  within: 3 days  # <-\n"
    )
    finding = assert_one(doc(trigger=trigger), "invalid-duration", col=11)
    assert finding.message.startswith("`trigger.within`")


def test_unknown_trigger_type() -> None:
    finding = assert_one(doc(trigger="trigger:\n  type: webhook  # <-\n"), "schema")
    assert "'webhook'" in finding.message


def test_unknown_trigger_type_written_after_other_keys() -> None:
    trigger = "trigger:\n  event: purchase\n  type: webhook  # <-\n"
    assert_one(doc(trigger=trigger), "schema", col=9)


def test_trigger_without_type() -> None:
    assert_one(doc(trigger="trigger:\n  event: purchase  # <-\n"), "schema", col=3)


def test_bad_op_in_a_flow_condition() -> None:
    text = doc("audience: {field: subscriber.fields.plan, op: like, value: pro}  # <-\n")
    finding = assert_one(text, "schema")
    assert "'eq'" in finding.message


def test_bad_op_deep_in_all_any_not() -> None:
    text = doc(
        "audience:\n"
        "  all:\n"
        "    - in_group: vip\n"
        "    - any:\n"
        "        - not:\n"
        "            field: subscriber.fields.plan\n"
        "            op: like  # <-\n"
        "            value: pro\n"
    )
    finding = assert_one(text, "schema", col=17)
    assert finding.message.startswith("`audience.all.1.any.0.not.op`")


def test_bad_op_in_an_event_trigger_where() -> None:
    trigger = (
        "trigger:\n  type: event\n  event: purchase\n  where:\n"
        "    field: event.data.total\n    op: bigger  # <-\n    value: 0\n"
    )
    finding = assert_one(doc(trigger=trigger), "schema", col=9)
    assert finding.message.startswith("`trigger.where.op`")


def test_bad_op_in_exit_on_where() -> None:
    text = doc("exit_on:\n  - event: purchase\n    where: {in_group: a, op: eq}  # <-\n")
    assert_one(text, "schema")


# --- every model rule ------------------------------------------------------------------


def _trigger(kind: str, *lines: str) -> str:
    return "trigger:\n  type: " + kind + "\n" + "".join(f"  {line}\n" for line in lines)


RULE_CASES: list[tuple[str, str, int | None]] = [
    ("invalid-duration", doc("wait: 3 days  # <-\n"), 7),
    ("invalid-duration", doc("wait: 1d12  # <-\n"), 7),
    ("invalid-duration", doc("wait: 12h1d  # <-\n"), 7),
    ("invalid-duration", doc("repeat:\n  every: 0s  # <-\n  times: 2\n"), 10),
    (
        "invalid-duration",
        doc(trigger=_trigger("date", "field: subscriber.fields.birthday", "offset: 36h  # <-")),
        11,
    ),
    ("invalid-time", doc("send_window:\n  start: 25:00  # <-\n  end: '18:00'\n"), 10),
    ("invalid-time", doc("send_window:\n  start: '09:00'\n  end: 9.30  # <-\n"), 8),
    (
        "invalid-time",
        doc(trigger=_trigger("date", "field: subscriber.fields.birthday", "at: 9:60  # <-")),
        7,
    ),
    (
        "invalid-timezone",
        doc("send_window:\n  start: '09:00'\n  end: '18:00'\n  timezone: Mars/Olympus  # <-\n"),
        13,
    ),
    (
        "invalid-timezone",
        doc(trigger=_trigger("schedule", "cron: 0 9 * * 1", "timezone: subscriber  # <-")),
        13,
    ),
    (
        "invalid-timezone",
        doc(trigger=_trigger("schedule", "cron: 0 9 * * 1", "timezone: ../etc/passwd  # <-")),
        13,
    ),
    ("invalid-cron", doc(trigger=_trigger("schedule", "cron: 61 9 * * *  # <-")), 9),
    ("invalid-cron", doc(trigger=_trigger("schedule", "cron: 0 0 9 * * *  # <-")), 9),
    ("invalid-cron", doc(trigger=_trigger("schedule", "cron: '@daily'  # <-")), 9),
    ("invalid-field-path", doc("audience: {field: plan, op: exists}  # <-\n"), None),
    (
        "invalid-field-path",
        doc("exit_on:\n  - event: purchase\n    where: {field: order.total, op: exists}  # <-\n"),
        None,
    ),
    ("start-at-required", doc(head="id: x\nstatus: scheduled  # <-\n"), 9),
    (
        "stop-at-before-start",
        doc(
            head="id: x\nstatus: scheduled\nstart_at: 2026-12-01T09:00:00+09:00\n"
            "stop_at: 2026-12-01T00:00:00Z  # <-\n"
        ),
        10,
    ),
    (
        "stop-at-before-start",
        doc(
            head="id: x\nstatus: scheduled\nstart_at: 2026-12-01T09:00:00+09:00\n"
            "stop_at: 2026-12-01T00:00:00+00:00  # <-\n"
        ),
        10,
    ),
    ("window-empty", doc("send_window:\n  start: 9:00\n  end: '09:00'  # <-\n"), 8),
    ("trigger-group", doc(trigger="trigger:\n  type: event  # <-\n  event: group.joined\n"), 3),
    ("trigger-group", doc(trigger=_trigger("event", "event: purchase", "group: vip  # <-")), 10),
    (
        "trigger-within",
        doc(trigger="trigger:\n  type: email  # <-\n  action: not_clicked\n  automation: src\n"),
        3,
    ),
    (
        "trigger-within",
        doc(trigger=_trigger("email", "action: opened", "automation: src", "within: 3d  # <-")),
        11,
    ),
    (
        "trigger-link",
        doc(
            trigger=_trigger(
                "email",
                "action: clicked",
                "automation: src",
                "link: https://shop.example/sale",
                "link_contains: /sale  # <-",
            )
        ),
        18,
    ),
    (
        "trigger-link",
        doc(
            trigger=_trigger(
                "email", "action: opened", "automation: src", "link: https://a.b  # <-"
            )
        ),
        9,
    ),
    (
        "trigger-never-sends",
        doc(trigger=_trigger("event", "event: subscriber.unsubscribed  # <-")),
        10,
    ),
    ("trigger-never-sends", doc(trigger=_trigger("event", "event: subscriber.deleted  # <-")), 10),
    (
        "retrigger-not-allowed",
        doc(
            "retrigger: {cooldown: 1h}  # <-\n",
            trigger=_trigger("date", "field: subscriber.fields.birthday"),
        ),
        12,
    ),
    (
        "retrigger-not-allowed",
        doc("retrigger: {cooldown: 1d}  # <-\n", trigger=_trigger("schedule", "cron: 0 9 * * 1")),
        12,
    ),
    (
        "email-body-required",
        "id: x\nstatus: draft\n" + API + "email:\n  from: a@b.c  # <-\n  subject: Hi\n",
        3,
    ),
    ("email-body-conflict", doc("  html: <p>x</p>\n  html_file: body.html  # <-\n"), 14),
    ("email-body-conflict", doc("  text_file: body.txt  # <-\n"), 14),
]


@pytest.mark.parametrize(("rule", "text", "col"), RULE_CASES)
def test_model_rule(rule: str, text: str, col: int | None) -> None:
    assert_one(text, rule, col=col)


def test_retrigger_true_on_a_date_trigger() -> None:
    text = doc(
        "retrigger: true  # <-\n", trigger=_trigger("date", "field: subscriber.fields.birthday")
    )
    assert_one(text, "retrigger-not-allowed", col=12)


def test_repeat_on_a_schedule_trigger() -> None:
    text = doc(
        "repeat: {every: 1w, times: 2}  # <-\n", trigger=_trigger("schedule", "cron: 0 9 * * 1")
    )
    assert_one(text, "repeat-not-allowed", col=9)


def test_zero_cooldown_is_one_duration_finding() -> None:
    text = doc("retrigger:\n  cooldown: 0s  # <-\n")
    assert_one(text, "invalid-duration", col=13)


def test_unknown_key_in_a_cooldown_is_one_finding() -> None:
    text = doc("retrigger:\n  cooldown: 1h\n  max: 3  # <-\n")
    assert assert_one(text, "schema", col=3).message == "unknown key `retrigger.max`"


def test_every_violation_is_reported_each_at_its_line() -> None:
    text = (
        "id: x\nstatus: scheduled\n"
        + API
        + "send_window:\n  start: '10:00'\n  end: '10:00'\n"
        + EMAIL
        + "  text_file: t.txt\n"
    )
    found = refused(text)
    assert [(f.rule, f.line) for f in found] == [
        ("start-at-required", 2),
        ("window-empty", 7),
        ("email-body-conflict", 12),
    ]
    assert all(f.automation == "x" for f in found)


def test_schema_errors_are_all_reported() -> None:
    text = "id: X\nstatus: live\n" + API + EMAIL + "wait: soon\n"
    found = refused(text)
    assert [(f.rule, f.line) for f in found] == [
        ("schema", 1),
        ("schema", 2),
        ("invalid-duration", 9),
    ]


# --- a complete, valid automation ------------------------------------------------------


FULL = """\
# yaml-language-server: $schema=../schema/automation.schema.json
id: coupon-after-open
name: Coupon
description: free text
labels: {team: growth}
status: scheduled
start_at: 2026-12-01T09:00:00+09:00
stop_at: 2027-03-01T00:00:00+09:00
trigger:
  type: email
  action: clicked
  automation: product-intro
  link_contains: /sale
audience:
  all:
    - {field: subscriber.fields.plan, op: ne, value: enterprise}
    - {not: {in_group: staff}}
    - any:
        - {field: subscriber.fields.score, op: gte, value: 10}
        - {field: subscriber.fields.country, op: in, value: [KR, JP]}
        - {field: subscriber.email, op: exists}
wait: 1d12h
exit_on:
  - event: purchase
    where: {field: event.data.total, op: gt, value: 0}
send_window:
  days: [fri, mon, mon]
  start: 9:00
  end: 18:00
  timezone: subscriber
retrigger: {cooldown: 1h}
repeat: {every: 1w, times: 4}
provider: marketing
email:
  from: "Shop <news@shop.example>"
  reply_to: help@shop.example
  subject: "{{ subscriber.fields.name | default('Hi') }}, 10% off"
  preheader: optional
  html_file: ../templates/coupon.html
  text: plain
  tags: [coupon]
"""


def test_full_automation_loads() -> None:
    model = load_automation("automations/coupon-after-open.yaml", FULL.encode()).model
    assert model is not None
    assert model.wait == 129_600
    assert model.repeat is not None and model.repeat.times == 4
    assert model.send_window is not None
    assert [d.value for d in model.send_window.days] == ["mon", "fri"]


def test_loaded_positions() -> None:
    loaded = load_automation(
        "automations/coupon-after-open.yaml", FULL.replace("times: 4", "times: '4'").encode()
    )
    assert loaded.document is not None
    assert loaded.position("trigger", "automation") == (12, 15)
    assert loaded.position("email", "subject", key=True) == (37, 3)
    assert loaded.position("audience", "all", 2, "any", 1, "value", 1) == (20, 66)


# --- postwright.yaml ---------------------------------------------------------------


def load_cfg(text: str) -> list[tuple[str, int]]:
    loaded = load_config("postwright.yaml", text.encode())
    assert loaded.model is None
    return [(f.rule, f.line) for f in loaded.findings]


def test_config_empty_file_is_the_default() -> None:
    loaded = load_config("postwright.yaml", b"")
    assert loaded.findings == ()
    assert loaded.model is not None
    assert list(loaded.model.providers) == ["default"]
    assert loaded.model.providers["default"].type == "outbox"


def test_config_full_example_loads() -> None:
    text = """\
timezone: Asia/Seoul
api_keys_env: POSTWRIGHT_API_KEYS
providers:
  default:
    type: postmark
    server_token_env: POSTMARK_TOKEN
    rate_limit: 50/s
  marketing:
    type: resend
    api_key_env: RESEND_API_KEY
    base_url: http://127.0.0.1:8025
  eu:
    type: mailgun
    api_key_env: MAILGUN_API_KEY
    domain: mg.shop.example
    region: eu
"""
    loaded = load_config("postwright.yaml", text.encode())
    assert loaded.findings == ()
    assert loaded.model is not None
    assert sorted(loaded.model.providers) == ["default", "eu", "marketing"]


def test_config_unknown_key() -> None:
    text = "timezone: UTC\nport: 8080  # <-\n"
    loaded = load_config("postwright.yaml", text.encode())
    assert [(f.rule, f.line, f.col, f.message) for f in loaded.findings] == [
        ("schema", 2, 1, "unknown key `port`")
    ]


def test_config_unknown_key_in_a_provider() -> None:
    text = "providers:\n  default:\n    type: outbox\n    folder: out  # <-\n"
    assert load_cfg(text) == [("schema", marked_line(text))]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("api_key", "re_xxx"),
        ("webhook_secret", "whsec_abc"),
        ("server_token", "abc"),
        ("webhook_password", "hunter2"),
    ],
)
def test_config_literal_secret(key: str, value: str) -> None:
    text = (
        "providers:\n  default:\n    type: resend\n    api_key_env: RESEND_KEY\n"
        f"    {key}: {value}  # <-\n"
    )
    loaded = load_config("postwright.yaml", text.encode())
    assert loaded.model is None
    finding = next(f for f in loaded.findings if f.rule == "literal-secret")
    assert (finding.line, finding.col) == (marked_line(text), 5)
    assert f"{key}_env" in finding.message
    assert value not in finding.message


def test_config_literal_secret_at_top_level() -> None:
    text = "api_keys: k1,k2  # <-\n"
    assert load_cfg(text) == [("literal-secret", 1)]


def test_config_bad_env_var_name() -> None:
    text = "providers:\n  default:\n    type: resend\n    api_key_env: resend-key  # <-\n"
    loaded = load_config("postwright.yaml", text.encode())
    assert [(f.rule, f.line, f.col) for f in loaded.findings] == [("schema", 4, 18)]
    assert "api_key_env" in loaded.findings[0].message


def test_config_unknown_provider_type() -> None:
    text = "providers:\n  default:\n    type: smtp  # <-\n"
    assert load_cfg(text) == [("schema", 3)]


def test_config_bad_timezone() -> None:
    text = "timezone: Seoul  # <-\n"
    assert load_cfg(text) == [("invalid-timezone", 1)]


def test_config_empty_providers_map() -> None:
    text = "timezone: UTC\nproviders: {}  # <-\n"
    assert load_cfg(text) == [("schema", 2)]


def test_config_empty_providers_map_is_refused() -> None:
    loaded = load_config("postwright.yaml", b"providers: {}\n")
    assert loaded.model is None
    assert [f.rule for f in loaded.findings] == ["schema"]
    assert "providers" in loaded.findings[0].message


def test_config_yaml_errors_come_first() -> None:
    assert load_cfg("timezone: UTC\ntimezone: Asia/Seoul  # <-\n") == [("yaml-duplicate-key", 2)]


# --- never raises ------------------------------------------------------------------------

_FRAGMENTS = st.sampled_from(
    [
        "id: x\n",
        "status: draft\n",
        "trigger:\n",
        "  type: event\n",
        "  type: email\n",
        "  event: a.b\n",
        "  within: 3d\n",
        "email:\n",
        "  html: <p>\n",
        "  text_file: ../x\n",
        "audience:\n",
        "  all:\n",
        "    - {not: {in_group: a}}\n",
        "    - field: x\n",
        "  op: eq\n",
        "- ",
        "[",
        "]",
        "{",
        "}",
        ": ",
        "&a ",
        "*a ",
        "!x ",
        "!!str ",
        "? ",
        "---\n",
        "...\n",
        "'",
        '"',
        "|\n",
        ">-\n",
        "  ",
        "\t",
        "#",
        "no",
        "9:00",
        "2026-12-01",
        "1e9",
        "\ufeff",
        "\x00",
    ]
)


@settings(max_examples=200, deadline=None, database=None)
@given(st.one_of(st.text(), st.lists(_FRAGMENTS, max_size=40).map("".join)))
def test_load_automation_never_raises(text: str) -> None:
    loaded = load_automation(PATH, text.encode("utf-8", "surrogatepass"))
    assert (loaded.model is None) == bool(loaded.findings)
    for finding in loaded.findings:
        assert finding.line >= 1 and finding.col >= 1


@settings(max_examples=200, deadline=None, database=None)
@given(st.binary(max_size=300))
def test_load_automation_never_raises_on_bytes(content: bytes) -> None:
    loaded = load_automation(PATH, content)
    assert loaded.model is None or loaded.findings == ()
