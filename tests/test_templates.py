"""Static template checks: syntax, loading, names, `event.data` reads and links (docs/rules.md)."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Mapping

import pytest

from runner.core.loader import Loaded, load_automation
from runner.core.model import Automation
from runner.core.version import template_paths
from runner.templating import analysis
from runner.templating import checks as templates

EVENT = "type: event\n  event: subscriber.added"
Row = tuple[str, str, int, int]


def automation(
    email: str, trigger: str = EVENT, path: str = "automations/a.yaml"
) -> Loaded[Automation]:
    """A valid automation; with the default trigger, `email` starts on line 8."""
    text = (
        f'id: a\nstatus: running\ntrigger:\n  {trigger}\nemail:\n  from: "S <s@shop.test>"\n{email}'
    )
    loaded = load_automation(path, text.encode())
    assert loaded.model is not None, loaded.findings
    return loaded


def check(loaded: Loaded[Automation], files: Mapping[str, str] | None = None) -> list[Row]:
    """(path, rule, line, col) of every finding; `files` maps repository paths to texts."""
    assert loaded.model is not None
    paths = template_paths(loaded.path, loaded.model)
    texts = {key: (files or {}).get(p) if p else None for key, p in paths.items()}
    found = templates.template_findings(loaded, paths, texts)
    assert all(f.automation == "a" for f in found)
    return sorted((f.path, f.rule, f.line, f.col) for f in found)


def rules(email: str, trigger: str = EVENT) -> list[str]:
    return [row[1] for row in check(automation(email, trigger))]


def test_clean_templates_have_no_findings() -> None:
    email = (
        "  subject: \"Hi {{ subscriber.fields.name | default('you') }}\"\n"
        '  preheader: "{{ automation.name }}"\n'
        "  html: |\n"
        "    {% for g in subscriber.groups %}{{ loop.index }} {{ g }}{% endfor %}\n"
        "    {% set n = namespace(x=1) %}{{ n.x }} {{ range(2) | list }}\n"
        '    <a href="{{ unsubscribe_url }}">Unsubscribe</a> {# a comment #}\n'
        '  text: "{{ event.name }} {{ event.data.anything }} {{ event.occurred_at }}"\n'
    )
    assert check(automation(email)) == []


def test_text_without_markers_is_not_parsed() -> None:
    assert analysis.analyse("plain { text } with {braces}") == analysis.Analysis((), ())


def test_analysis_is_cached_by_text() -> None:
    text = "{{ subscriber.email }} cached"
    assert analysis.analyse(text) is analysis.analyse(text)


def test_syntax_error_on_a_same_line_value_is_at_the_value() -> None:
    email = '  subject: "Hi {{ subscriber.email }"\n  text: ok\n'
    assert check(automation(email)) == [("automations/a.yaml", "template-syntax", 8, 12)]


def test_syntax_error_in_a_block_scalar_maps_to_the_yaml_line() -> None:
    email = "  subject: Hi\n  html: |\n    <p>one</p>\n    <p>two</p>\n    {% if subscriber %}\n"
    # html: is line 9, its content starts on line 10; the template's line 3 is line 12.
    assert check(automation(email)) == [("automations/a.yaml", "template-syntax", 12, 5)]


@pytest.mark.parametrize(
    "tag",
    [
        "{% include 'x.html' %}",
        "{% extends 'base.html' %}",
        "{% import 'm.html' as m %}",
        "{% from 'm' import f %}",
    ],
)
def test_loading_other_templates_is_refused(tag: str) -> None:
    loaded = automation(f"  subject: Hi\n  text: |\n    line one\n    {tag}\n")
    paths = template_paths(loaded.path, loaded.model) if loaded.model else {}
    found = templates.template_findings(loaded, paths, {})
    assert [(f.rule, f.line, f.col) for f in found] == [("template-syntax", 11, 5)]
    assert "cannot load other templates" in found[0].message


def test_unknown_names_are_errors_at_their_line() -> None:
    email = (
        '  subject: "{{ first_name }}"\n'
        "  text: |\n"
        "    {% for item in subscriber.groups %}{{ item }}{% endfor %}\n"
        "    {% set greeting = 'hey' %}{{ greeting }}\n"
        "    {{ item }} {{ cycler('a', 'b').next() }}\n"
    )
    found = check(automation(email))
    assert found == [
        ("automations/a.yaml", "template-unknown-name", 8, 12),
        ("automations/a.yaml", "template-unknown-name", 12, 5),
    ]
    loaded = automation(email)
    assert loaded.model is not None
    messages = [f.message for f in templates.template_findings(loaded, {}, {})]
    assert messages[0].startswith("`first_name` is not defined")
    assert messages[1].startswith("`item` is not defined")


@pytest.mark.parametrize(
    ("trigger", "template", "warns"),
    [
        (EVENT, "{{ event.data.total }} {{ event.occurred_at }}", False),
        ("type: api", "{{ event.data.order_id }}", False),
        ("type: api", "{{ event.occurred_at }}", True),
        ("type: email\n  action: opened\n  automation: b", "{{ event.data.message_id }}", False),
        ("type: email\n  action: opened\n  automation: b", "{{ event.data.sent_at }}", False),
        ("type: email\n  action: opened\n  automation: b", "{{ event.data.automation }}", False),
        ("type: email\n  action: opened\n  automation: b", "{{ event.data.link }}", True),
        ("type: email\n  action: clicked\n  automation: b", "{{ event.data.link }}", False),
        (
            "type: email\n  action: not_clicked\n  automation: b\n  within: 3d",
            "{{ event.data.link }}",
            False,
        ),
        ("type: email\n  action: sent\n  automation: b", "{{ event.occurred_at }}", True),
        (
            "type: date\n  field: subscriber.fields.birthday",
            "{{ event.data.date }} {{ event.data.field }}",
            False,
        ),
        ("type: date\n  field: subscriber.fields.birthday", "{{ event.data.coupon }}", True),
        ("type: date\n  field: subscriber.fields.birthday", "{{ event.data['coupon'] }}", True),
        ("type: date\n  field: subscriber.fields.birthday", "{{ event['data'].coupon }}", True),
        ("type: date\n  field: subscriber.fields.birthday", "{{ event.data.get('coupon') }}", True),
        (
            "type: date\n  field: subscriber.fields.birthday",
            "{{ event.data.coupon | default('x') }}",
            False,
        ),
        ("type: date\n  field: subscriber.fields.birthday", "{{ event.data | tojson }}", False),
        ("type: schedule\n  cron: '0 9 * * *'", "{{ event.data.tick }}", False),
        ("type: schedule\n  cron: '0 9 * * *'", "{{ event.data.date }}", True),
        ("type: schedule\n  cron: '0 9 * * *'", "{{ event.occurred_at }}", True),
    ],
)
def test_event_data_the_trigger_cannot_supply_warns(
    trigger: str, template: str, warns: bool
) -> None:
    loaded = automation(f'  subject: Hi\n  text: "{template}"\n', trigger)
    expected = [(loaded.path, "template-event-data", 8 + trigger.count("\n"), 9)] if warns else []
    assert check(loaded) == expected


def test_event_data_warning_is_a_warning_naming_what_is_supplied() -> None:
    loaded = automation(
        '  subject: "{{ event.data.coupon }}"\n  text: x\n', "type: schedule\n  cron: '0 9 * * *'"
    )
    [finding] = templates.template_findings(loaded, {}, {})
    assert finding.severity == "warning"
    assert (
        finding.message
        == "`event.data.coupon` is never set by this `schedule` trigger (it supplies tick)"
    )


@pytest.mark.parametrize(
    ("href", "rule"),
    [
        ('href="#"', "link-empty"),
        ('href=""', "link-empty"),
        ("href=' # '", "link-empty"),
        ('href="https://example.com/sale"', "link-placeholder"),
        ('HREF="http://news.example.org"', "link-placeholder"),
        ("href=https://user@shop.example.net:8080/x", "link-placeholder"),
        ('href="https://"', "link-placeholder"),
        ('href="https:///path"', "link-placeholder"),
        ('href="https://shop.test/sale"', None),
        ('href="https://notexample.com/"', None),
        ('href="https://example.com.shop.test/"', None),
        ('href="/relative/path"', None),
        ('href="mailto:help@shop.test"', None),
        ('href="{{ unsubscribe_url }}"', None),
        ("href=\"{{ subscriber.fields.url | default('#') }}\"", None),
        ('href="https://{{ subscriber.fields.shop }}/cart"', None),
    ],
)
def test_link_warnings_in_html(href: str, rule: str | None) -> None:
    loaded = automation(f"  subject: Hi\n  html: |\n    <p>Hi</p>\n    <p><a {href}>x</a></p>\n")
    assert check(loaded) == ([(loaded.path, rule, 11, 11)] if rule else [])


def test_links_in_text_bodies_are_not_checked() -> None:
    assert rules("  subject: Hi\n  text: \"<a href='#'>x</a>\"\n") == []


def test_template_file_problems_are_reported_in_the_template_file() -> None:
    loaded = automation(
        "  subject: Hi\n  html_file: ../templates/w.html\n  text_file: ../templates/w.txt\n"
    )
    files = {
        "templates/w.html": '<p>{{ coupon }}</p>\n\n  <a href="https://example.com">x</a>\n',
        "templates/w.txt": "Hello\n{% for x in y %}\n",
    }
    assert check(loaded, files) == [
        ("templates/w.html", "link-placeholder", 3, 6),
        ("templates/w.html", "template-unknown-name", 1, 1),
        ("templates/w.txt", "template-syntax", 2, 1),
    ]


def test_missing_and_outside_template_files() -> None:
    loaded = automation(
        "  subject: Hi\n  html_file: ../templates/none.html\n  text_file: ../../../etc/passwd\n"
    )
    assert check(loaded) == [
        ("automations/a.yaml", "template-missing", 9, 14),
        ("automations/a.yaml", "template-outside-repo", 10, 14),
    ]


@pytest.mark.parametrize(
    "text",
    [
        '{{ "x"|center(400000000) }}',
        '<p>{{ "x" * 300000000 }}</p>',
        '{{ "ab"|replace("a", "a" * 100000000) }}',
        '{% if "x"|center(400000000) %}x{% endif %}',
    ],
)
def test_checking_a_template_evaluates_none_of_it(text: str) -> None:
    # Jinja folds constant expressions while compiling; the check compiles in the server
    # (on every reload), outside the render worker's caps, so it must not fold anything.
    analysis.analyse.cache_clear()
    tracemalloc.start()
    try:
        assert analysis.analyse(text).problems == ()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024, f"{peak / 1e6:.0f} MB"


def test_thousand_files_validate_fast() -> None:
    loaded = [
        automation(
            f"  subject: \"Offer {i} for {{{{ subscriber.fields.name | default('you') }}}}\"\n"
            f"  html: |\n    <p>Hi {{{{ subscriber.email }}}}, code {i}</p>\n"
            f'    <a href="https://shop.test/{i}">Shop</a>\n'
            '    <a href="{{ unsubscribe_url }}">U</a>\n'
            f'  text: "Offer {i}: {{{{ event.data.total }}}}"\n',
            path=f"automations/a{i}.yaml",
        )
        for i in range(1000)
    ]
    start = time.perf_counter()
    found = [templates.template_findings(item, {}, {}) for item in loaded]
    elapsed = time.perf_counter() - start
    assert not any(found)
    assert elapsed < 1.0, f"{elapsed:.2f}s"


@pytest.mark.parametrize(
    "text",
    [
        "Hi {{ subscriber.fields.name }}",
        "{{ subscriber.fields.name | default('there') }}, 10% off",
        "{{- subscriber.email -}} and {{ automation.name }}",
        "{{ event.data.total }} then {{ event.data.items }}",
        'line\n{{ event.occurred_at }}\n{{ event.data.coupon | d("X") }}',
        "{{ event.data.link | default(0) }} {{ event.name }} {{ unsubscribe_url }}",
        '<a href="{{ unsubscribe_url }}">x</a>\n<p>{{ event.data.sku }}</p>',
        "{% if subscriber.fields.vip | default(false) %}VIP{% endif %}",
        "{%- if event.data.total == 3 -%}\n{{ event.data.total }}\n{%- elif not "
        "subscriber.fields.x %}b{% else %}c{% endif %}",
        "{% if event.data.plan != 'pro' %}{% if event.occurred_at %}x{% endif %}{% endif %}",
    ],
)
def test_the_fast_path_agrees_with_the_parser(text: str) -> None:
    from runner.templating.analysis import _analyse_parsed, _analyse_simple

    fast = _analyse_simple(text)
    assert fast is not None
    assert fast == _analyse_parsed(text)


@pytest.mark.parametrize(
    "text",
    [
        "{{ unknown.name }}",
        "{% if x %}{{ subscriber.email }}{% endif %}",
        "{% for g in subscriber.groups %}{{ g }}{% endfor %}",
        "{% if subscriber.email %}unclosed",
        "{% endif %}",
        "{% else %}",
        "{% if subscriber.email %}{% else x %}{% endif %}",
        "{% set a = 1 %}{{ subscriber.email }}",
        "{{ subscriber.email }} {{ subscriber.fields.a + 1 }}",
        "{{ subscriber.email",
        "{# note #}{{ subscriber.email }}",
        "{{ subscriber.fields['a'] }}",
    ],
)
def test_the_fast_path_leaves_everything_else_to_the_parser(text: str) -> None:
    from runner.templating.analysis import _analyse_simple

    assert _analyse_simple(text) is None
