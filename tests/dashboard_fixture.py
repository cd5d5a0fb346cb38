"""A runner with something to show on the dashboard: two automations (one sends at once,
one waits two days), two people, sent messages with provider events and a pending queue."""

from __future__ import annotations

from pathlib import Path

from runner.core.records import MessageEvent
from runner.store.base import WriteTx
from tests.harness import START, WELCOME, Harness, write_repo

NUDGE = """\
id: nudge
name: Second-day nudge
labels: {team: growth}
status: running
trigger:
  type: event
  event: subscriber.added
wait: 2d
email:
  from: "Shop <news@shop.test>"
  subject: "Still there, {{ subscriber.fields.name | default('friend') }}?"
  html: "<p>Hi <b>{{ subscriber.email }}</b></p>"
  text: "Hi {{ subscriber.email }}"
"""
PROMO = """\
id: promo
status: running
trigger: {type: event, event: purchase}
email:
  from: "Shop <news@shop.test>"
  subject: Thanks
  html_file: ../templates/promo.html
"""
PROMO_HTML = """\
<p class="hello">Thanks, {{ subscriber.fields.name | default("friend") }}!</p>
{% if event.data.total %}<p>Your order: {{ event.data.total }} EUR</p>{% endif %}
<a href="https://shop.test/orders?utm_source=email&amp;utm_campaign=promo-with-a-long-name">Orders</a>
"""
PEOPLE = ("ann@example.com", "bob@example.com", "cat@example.com")
# A commit the dashboard shows applied, and where the repository's web pages are.
SHA = "0123456789abcdef0123456789abcdef01234567"
WEB_URL = "https://git.example/acme/mail"


def dashboard_repo(tmp_path: Path, *, linked: bool = False) -> Path:
    """The repository of the dashboard tests; `linked`: with a template file (`promo`) and
    `repository.web_url` set."""
    if not linked:
        return write_repo(tmp_path / "repo", {"welcome": WELCOME, "nudge": NUDGE})
    config = f"repository:\n  web_url: {WEB_URL}/\n"
    repo = write_repo(
        tmp_path / "repo", {"welcome": WELCOME, "nudge": NUDGE, "promo": PROMO}, config
    )
    (repo / "templates").mkdir()
    (repo / "templates" / "promo.html").write_text(PROMO_HTML, encoding="utf-8")
    return repo


def populate(h: Harness) -> None:
    """Post the people, send the welcome emails, record an open and a click."""
    for email in PEOPLE:
        response = h.post_event("subscriber.added", email, subscriber={"fields": {"name": "A"}})
        assert response.status_code == 202, response.text
    h.drain()
    sent = h.read(lambda tx: tx.messages(10, "welcome"))
    assert len(sent) == len(PEOPLE)

    def events(tx: WriteTx) -> None:
        for n, (kind, url) in enumerate([("opened", None), ("clicked", "https://shop.test/a")]):
            tx.insert_message_event(
                MessageEvent("default", f"fb{n}", sent[0].id, kind, START, START, url, None)
            )

    h.write(events)
