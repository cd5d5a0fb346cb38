"""The pure parts of `postwright preview`: what templates read, generated samples, timing in
words, next firings, the text of an HTML body and the index."""

from __future__ import annotations

from datetime import UTC, datetime

from runner.core.loader import load_automation
from runner.core.model import Automation
from runner.repo.snapshot import MemorySnapshot
from runner.review.index import Item, Side, render_index
from runner.review.plaintext import html_to_text
from runner.review.samples import sample_for, trigger_event
from runner.review.timing_words import next_firings, timing_words, window_words
from runner.templating.samples import sample_values, template_reads

NOW = datetime(2026, 12, 1, tzinfo=UTC)
EMAIL = 'email:\n  from: "S <s@shop.test>"\n  subject: "Hi {{ subscriber.fields.first_name }}"\n'


def model(trigger: str, extra: str = "", body: str = "  text: Hello\n") -> Automation:
    text = f"id: a\nstatus: running\n{extra}trigger:\n  {trigger}\n{EMAIL}{body}"
    loaded = load_automation("automations/a.yaml", text.encode())
    assert loaded.model is not None, loaded.findings
    return loaded.model


def test_template_reads_fields_data_loops_and_get() -> None:
    reads = template_reads(
        [
            "{{ subscriber.fields.first_name | default('x') }} {{ subscriber.fields['plan'] }}",
            "{% for line in event.data.lines %}{{ line.sku }}{{ line['qty'] }}{% endfor %}",
            "{{ event.data.get('coupon') }} {{ event.data.total }} {% if %}",  # unparsable
            "{{ event.data.get('coupon') }} {{ event.data.total }}",
            None,
        ]
    )
    assert reads.fields == {"first_name": None, "plan": None}
    assert reads.data == {"lines": {"sku", "qty"}, "coupon": None, "total": None}
    values = sample_values(reads.data)
    assert values["lines"] == [{"qty": 2, "sku": "sample sku"}, {"qty": 2, "sku": "sample sku"}]
    assert values["total"] == "42.00" and values["coupon"] == "WELCOME10"
    assert sample_values(reads.fields) == {"first_name": "Alex", "plan": "pro"}


def test_generated_samples_follow_the_trigger_and_files_override_them() -> None:
    clicked = model("type: email\n  action: clicked\n  automation: intro\n  link: https://s.test/x")
    event = trigger_event(clicked, NOW)
    assert event["name"] == "email.clicked" and event["data"]["link"] == "https://s.test/x"
    dated = model("type: date\n  field: subscriber.fields.birthday")
    assert trigger_event(dated, NOW) == {
        "name": "date",
        "data": {"field": "birthday", "date": "2026-12-01"},
    }
    plain = model("type: event\n  event: purchase", body="  text: '{{ event.data.total }}'\n")
    sample = sample_for(plain, {}, MemorySnapshot({}), NOW)
    assert (sample.source, sample.fields, sample.event["data"]) == (
        "generated",
        {"first_name": "Alex"},
        {"total": "42.00"},
    )
    given = MemorySnapshot({"samples/a.json": b'{"event": {"data": {"total": 9}}}'})
    assert sample_for(plain, {}, given, NOW).event["data"] == {"total": 9}
    scenario = (
        b"subscribers:\n  - {email: a@s.test, fields: {first_name: Ann}}\n"
        b"  - {email: b@s.test, fields: {first_name: Bo}}\n"
        b"events:\n  - {type: signup, subscriber: a@s.test}\n"
        b"  - {type: purchase, subscriber: b@s.test, data: {total: 5}}\n"
    )
    told = sample_for(plain, {}, MemorySnapshot({"scenarios/s.yaml": scenario}), NOW)
    assert (told.source, told.email, told.fields, told.event["data"]) == (
        "scenarios/s.yaml",
        "b@s.test",
        {"first_name": "Bo"},
        {"total": 5},
    )
    # A date trigger's field is filled even when no template reads it.
    birthday = sample_for(dated, {}, MemorySnapshot({}), NOW)
    assert birthday.fields["birthday"] == "1990-12-11"
    assert len(next_firings(dated, NOW, "UTC", birthday.fields)) == 5


def test_timing_in_words() -> None:
    text = model(
        "type: event\n  event: cart.abandoned",
        "wait: 1d12h\nrepeat: {every: 1w, times: 3}\n"
        "send_window: {days: [sat, sun], start: '22:00', end: '02:00', timezone: subscriber}\n",
    )
    assert timing_words(text) == [
        "Trigger: when a `cart.abandoned` event arrives",
        "Wait: 1d12h after the trigger",
        "Window: Sat, Sun, 22:00 to 02:00 (to the next day) (the subscriber's time zone)",
        "Repeat: 3 more, every 1w",
    ]
    assert window_words(None) == "any time"


def test_next_five_date_firings_for_the_sample_subscriber() -> None:
    dated = model("type: date\n  field: subscriber.fields.birthday\n  at: '10:00'")
    firings = next_firings(dated, NOW, "Europe/Lisbon", {"birthday": "1992-02-29"})
    days = ["2027-02-28", "2028-02-29", "2029-02-28", "2030-02-28", "2031-02-28"]
    assert [f.isoformat() for f in firings] == [f"{day}T10:00:00+00:00" for day in days]
    assert next_firings(model("type: api"), NOW, "UTC", {}) == []


def test_html_to_text_keeps_paragraphs_cells_and_links() -> None:
    html = (
        "<html><head><style>p{color:red}</style></head><body><p>Hi\n  Alex,</p>"
        "<table><tr><td>1 x</td><td>Mug</td></tr></table>"
        '<p><a href="https://s.test/o/1">Track</a></p></body></html>'
    )
    assert html_to_text(html) == "Hi Alex,\n\n1 x Mug\n\nTrack <https://s.test/o/1>\n"


def test_the_index_shows_created_and_deleted_automations() -> None:
    items = [
        Item("new", "created", "automations/new.yaml", None, Side("Hi", "S <s@s.test>", "draft")),
        Item(
            "old",
            "deleted",
            "automations/old.yaml",
            Side("Bye", "S <s@s.test>", "stopped"),
            None,
        ),
    ]
    text = render_index(items, "a" * 40, None)
    assert text.startswith("# Postwright preview: `aaaaaaa` → the working tree\n\n2 automation")
    assert "| Subject | — | `Hi` |" in text
    assert "| Subject | `Bye` | — |" in text
    assert "**Lifecycle:** deleted (the runner keeps its history)" in text
    assert render_index([], None, None).endswith("No automation changes.\n")
