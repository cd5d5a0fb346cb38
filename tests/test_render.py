"""Rendering one email: variables, escaping, preheader, headers; every failure a RenderError."""

from __future__ import annotations

from typing import Any

import pytest

from runner.core.loader import load_automation
from runner.core.model import Automation
from runner.core.records import Subscriber
from runner.templating import sandbox
from runner.templating.render import RenderedEmail, RenderError, email_job, render_job

URL = "https://mail.shop.test/u/TOKEN"


def automation(email: str, *, name: str | None = "Welcome") -> Automation:
    """A valid api-triggered automation whose `email:` block is `email` (indented YAML)."""
    source = f"id: welcome\nstatus: running\ntrigger: {{type: api}}\nemail:\n{email}"
    if name is not None:
        source = f"name: {name}\n" + source
    loaded = load_automation("automations/welcome.yaml", source.encode())
    assert loaded.model is not None, loaded.findings
    return loaded.model


def body(html: str, subject: str = "Hi") -> Automation:
    return automation(f'  from: "Shop <s@shop.test>"\n  subject: "{subject}"\n  html: {html!r}\n')


def render_email(
    model: Automation, files: dict[str, str], *args: Any, **kwargs: Any
) -> RenderedEmail:
    """Render in this process, as a render worker does."""
    return render_job(email_job(model, files, *args, **kwargs))


SUBSCRIBER = Subscriber(7, "ann@shop.test", {"name": "Ann", "plan": "free"}, {"vip", "beta"})
EVENT: dict[str, Any] = {"name": "api", "data": {"coupon": "C10"}}


def html_of(html: str, **kwargs: Any) -> str:
    rendered = render_email(body(html), {}, SUBSCRIBER, EVENT, URL, **kwargs)
    assert rendered.html is not None
    return rendered.html


def test_variables_reach_every_part() -> None:
    model = automation(
        '  from: "Shop <s@shop.test>"\n'
        '  subject: "{{ subscriber.fields.name }}, {{ automation.name }}"\n'
        "  html: \"<a href='{{ unsubscribe_url }}'>{{ event.data.coupon }}</a>\"\n"
        "  text: \"{{ subscriber.email }} {{ subscriber.groups | join(',') }}"
        ' {{ automation.id }}"\n'
    )
    rendered = render_email(model, {}, SUBSCRIBER, EVENT, URL)
    assert rendered.subject == "Ann, Welcome"
    assert rendered.html == f"<a href='{URL}'>C10</a>"
    assert rendered.text == "ann@shop.test beta,vip welcome"


def test_headers_offer_one_click_unsubscribe() -> None:
    rendered = render_email(body("<p>x</p>"), {}, SUBSCRIBER, EVENT, URL)
    assert rendered.headers == {
        "List-Unsubscribe": f"<{URL}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def test_html_is_escaped_but_subject_and_text_are_not() -> None:
    person = Subscriber(1, "x@shop.test", {"name": "<b>&"})
    model = automation(
        '  from: "Shop <s@shop.test>"\n  subject: "{{ subscriber.fields.name }}"\n'
        '  html: "{{ subscriber.fields.name }}"\n  text: "{{ subscriber.fields.name }}"\n'
    )
    rendered = render_email(model, {}, person, EVENT, URL)
    assert rendered.html == "&lt;b&gt;&amp;"
    assert (rendered.subject, rendered.text) == ("<b>&", "<b>&")


def test_overrides_overlay_fields_for_this_render_only() -> None:
    assert html_of("{{ subscriber.fields.plan }}", overrides={"plan": "pro"}) == "pro"
    assert SUBSCRIBER.fields["plan"] == "free"


def test_template_files_supply_the_bodies() -> None:
    model = automation('  from: "Shop <s@shop.test>"\n  subject: "Hi"\n  html_file: w.html\n')
    files = {"html_file": "<p>{{ subscriber.fields.name }}</p>"}
    assert render_email(model, files, SUBSCRIBER, EVENT, URL).html == "<p>Ann</p>"
    with pytest.raises(RenderError, match="no body"):
        render_email(model, {}, SUBSCRIBER, EVENT, URL)


def test_preheader_is_a_hidden_block_inside_body() -> None:
    model = automation(
        '  from: "Shop <s@shop.test>"\n  subject: "Hi"\n'
        '  preheader: "{{ subscriber.fields.name }} & co"\n'
        "  html: \"<html><body class='m'><p>x</p></body></html>\"\n"
    )
    html = render_email(model, {}, SUBSCRIBER, EVENT, URL).html
    assert html is not None
    assert html.startswith("<html><body class='m'><div style=\"display:none")
    assert "Ann &amp; co</div><p>x</p>" in html


def test_preheader_without_body_tag_is_prefixed() -> None:
    model = automation(
        '  from: "Shop <s@shop.test>"\n  subject: "Hi"\n  preheader: "Soon"\n  html: "<p>x</p>"\n'
    )
    html = render_email(model, {}, SUBSCRIBER, EVENT, URL).html
    assert html is not None and html.startswith("<div") and html.endswith("Soon</div><p>x</p>")


def test_subject_line_breaks_are_folded() -> None:
    model = automation('  from: "Shop <s@shop.test>"\n  subject: "a\\r\\nBcc: x"\n  text: t\n')
    assert render_email(model, {}, SUBSCRIBER, EVENT, URL).subject == "a Bcc: x"


def test_automation_without_name_is_named_by_id() -> None:
    model = automation(
        '  from: "Shop <s@shop.test>"\n  subject: "{{ automation.name }}"\n  text: t\n', name=None
    )
    assert render_email(model, {}, SUBSCRIBER, EVENT, URL).subject == "welcome"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ ''.__class__.__mro__ }}", "SecurityError"),
        ("{{ subscriber.__init__.__globals__ }}", "SecurityError"),
        ("{{ nope }}", "UndefinedError: 'nope' is undefined"),
        ("{{ subscriber.fields.missing }}", "UndefinedError"),
        ("{% if %}", "TemplateSyntaxError"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{% for i in range(100001) %}{% endfor %}", "range too big"),
        ("{{ 'x' * 2000000 }}", "larger than"),
        ("{{ 2 ** 100000 }}", "exponent"),
        ("{{ 'x' | center(400000000) }}", "a width of 400000000"),
        ("{{ 'x'.ljust(400000000) }}", "a width of 400000000"),
        ("{{ 'x' | indent(2000000, true) }}", "a width of 2000000"),
        ("{{ '%400000000s' % 'x' }}", "a width of 400000000"),
        ("{{ '%*s' % (400000000, 'x') }}", "a width of 400000000"),
        ("{{ '%400000000s' | format('x') }}", "a width of 400000000"),
        ("{{ '{:>400000000}'.format('x') }}", "a width of 400000000"),
        ("{{ '{:>{}}'.format('x', 400000000) }}", "a width of 400000000"),
    ],
)
def test_errors_become_render_errors_naming_the_part(template: str, message: str) -> None:
    with pytest.raises(RenderError, match="^html: .*" + message.replace("(", r"\(")):
        html_of(template)


def test_ordinary_formatting_of_large_numbers_is_not_a_width() -> None:
    template = "{{ '{:,}'.format(12345678) }} {{ '%d' % 12345678 }} {{ 'Total: %s' | format(9) }}"
    assert html_of(template) == "12,345,678 12345678 Total: 9"


def test_output_over_one_mebibyte_fails() -> None:
    template = "{% for i in range(1100) %}" + "x" * 1000 + "{% endfor %}"
    with pytest.raises(RenderError, match="larger than 1048576"):
        html_of(template)
    assert len(html_of("{% for i in range(1000) %}" + "x" * 1000 + "{% endfor %}")) == 1_000_000


def test_compiled_templates_are_cached_by_text() -> None:
    text = "<p>{{ subscriber.email }} cached</p>"
    html_of(text)
    before = sandbox.compiled.cache_info()
    assert html_of(text) == "<p>ann@shop.test cached</p>"
    after = sandbox.compiled.cache_info()
    assert (after.misses, after.hits) == (before.misses, before.hits + 2)  # subject and body


# --- mapping keys before methods (docs/file-format.md "Templates") -----------------


@pytest.mark.parametrize(
    "data",
    [{}, {"items": [{"name": "Mug"}, {"name": "Tea"}]}],
    ids=["missing", "present"],
)
def test_a_subscript_on_event_data_is_the_key_never_the_method(data: dict[str, Any]) -> None:
    html = "{% for item in event.data['items'] | default([]) %}[{{ item.name }}]{% endfor %}"
    rendered = render_email(body(html), {}, SUBSCRIBER, {"name": "api", "data": data}, URL)
    expected = "".join(f"[{item['name']}]" for item in data.get("items", []))
    assert rendered.html == expected


def test_a_missing_subscripted_key_is_an_undefined_error_not_a_method() -> None:
    with pytest.raises(RenderError, match="items"):
        render_email(body("{{ event.data['items'] }}"), {}, SUBSCRIBER, EVENT, URL)


def test_a_dotted_name_prefers_the_key_and_keeps_methods_otherwise() -> None:
    event = {"name": "api", "data": {"items": ["a", "b"], "values": 3}}
    html = "{{ event.data.items | join(',') }} {{ event.data.values }}"
    html += " {% for k, v in subscriber.fields.items() | sort %}{{ k }}={{ v }};{% endfor %}"
    rendered = render_email(body(html), {}, SUBSCRIBER, event, URL)
    assert rendered.html == "a,b 3 name=Ann;plan=free;"
