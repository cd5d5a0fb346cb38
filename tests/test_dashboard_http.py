"""The dashboard over plain HTTP against a real `serve` (docs/dashboard.md): pages, the
session cookie, sign-in with an API key, CSRF-checked forms that act like the API's
operations, escaping of stored text, and the sandboxed message body."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from runner.core.records import SendStatus
from runner.gitops.reload_state import ReloadResult, record_summary
from runner.server.ui import session as sessions
from tests.dashboard_fixture import PEOPLE, SHA, WEB_URL, dashboard_repo, populate
from tests.harness import Harness

KEY = "k" * 40
KEYED = {"POSTWRIGHT_API_KEYS": KEY, "POSTWRIGHT_PUBLIC_URL": "https://mail.shop.test"}
PAGES = ("/ui", "/ui/automations/welcome", "/ui/automations/nudge", "/ui/people", "/ui/messages")


def csrf_of(page: httpx.Response) -> str:
    """The CSRF token of the forms of a page."""
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found is not None, page.text[:500]
    return found.group(1)


def pending_ids(h: Harness) -> list[str]:
    sends = h.read(lambda tx: tx.pending_sends("nudge", [SendStatus.PENDING], 10))
    return [s.id for s in sends]


def test_every_page_loads_with_an_anonymous_session_in_loopback_mode(tmp_path: Path) -> None:
    with Harness(dashboard_repo(tmp_path)) as h:
        populate(h)
        for path in PAGES:
            page = h.http.get(path)
            assert page.status_code == 200, (path, page.text[:300])
            assert page.headers["content-type"].startswith("text/html")
            assert "script-src" not in page.headers["content-security-policy"]
            assert "default-src 'none'" in page.headers["content-security-policy"]
        cookie = httpx.get(f"{h.url}/ui").headers["set-cookie"]  # a new visitor
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
        assert "Secure" not in cookie  # plain http on loopback
        # Behind a TLS proxy the cookie is Secure.
        proxied = httpx.get(f"{h.url}/ui", headers={"X-Forwarded-Proto": "https"})
        assert "Secure" in proxied.headers["set-cookie"]
        listed = h.http.get("/ui").text
        assert "Second-day nudge" in listed and "team=growth" in listed and "<svg" in listed
        detail = h.http.get("/ui/automations/welcome").text
        assert "33.3 %" in detail and "https://shop.test/a" in detail
        assert h.http.get("/ui/automations/nope").status_code == 404


def test_filters_by_status_and_label(tmp_path: Path) -> None:
    with Harness(dashboard_repo(tmp_path)) as h:
        by_label = h.http.get("/ui", params={"label": "team=growth"}).text
        assert "/ui/automations/nudge" in by_label and "/ui/automations/welcome" not in by_label
        by_status = h.http.get("/ui", params={"status": "paused"}).text
        assert "No automation matches." in by_status


def test_send_now_and_remove_act_like_the_api_and_are_recorded(tmp_path: Path) -> None:
    with Harness(dashboard_repo(tmp_path)) as h:
        populate(h)
        first, second, _ = pending_ids(h)
        page = h.http.get("/ui/automations/nudge")
        token = csrf_of(page)
        # Without the session's token: refused, nothing changes.
        url = f"/ui/automations/nudge/pending/{first}/remove"
        refused = h.http.post(url, data={"csrf": "0" * 64})
        assert refused.status_code == 403
        assert first in pending_ids(h)
        removed = h.http.post(url, data={"csrf": token})
        assert removed.status_code == 303
        assert removed.headers["location"] == "/ui/automations/nudge?notice=removed"
        assert first not in pending_ids(h)
        cancelled = h.read(lambda tx: tx.pending_send(first))
        assert cancelled is not None and cancelled.reason == "removed"
        now = h.http.post(f"/ui/automations/nudge/pending/{second}/send-now", data={"csrf": token})
        assert now.status_code == 303
        h.drain()
        assert second not in pending_ids(h)
        history = h.read(lambda tx: tx.history("nudge"))
        assert [(e.kind, e.value, e.detail) for e in history if e.kind == "pending"] == [
            ("pending", "removed", first),
            ("pending", "send_now", second),
        ]
        shown = h.http.get("/ui/automations/nudge?notice=removed").text
        assert "The send was removed from the queue." in shown
        # A second removal of the same send is the API's 409, shown as a page.
        again = h.http.post(url, data={"csrf": token})
        assert again.status_code == 409 and "Something went wrong" in again.text


def test_a_suppression_is_lifted_and_a_person_erased_through_forms(tmp_path: Path) -> None:
    with Harness(dashboard_repo(tmp_path)) as h:
        populate(h)
        bob = next(m for m in h.read(lambda tx: tx.messages(10, "welcome")) if m.to == PEOPLE[1])
        bounce = {"id": "b1", "type": "bounced", "message_id": bob.id, "bounce": "hard"}
        assert h.http.post("/v1/providers/default/webhook", json=bounce).status_code < 300
        h.drain()
        page = h.http.get("/ui/people", params={"email": PEOPLE[1]})
        assert "Lift the suppression" in page.text
        lifted = h.http.post(
            "/ui/people/unsuppress",
            data={"csrf": csrf_of(page), "email": PEOPLE[1], "note": "fixed mailbox"},
        )
        assert lifted.status_code == 303
        person = h.read(lambda tx: tx.subscriber(PEOPLE[1]))
        assert person is not None and person.suppressed is None
        lifts = h.read(lambda tx: tx.suppression_lifts(person.id or 0))
        assert [(lift.lifted_by, lift.note) for lift in lifts] == [("dashboard", "fixed mailbox")]
        confirm = h.http.get("/ui/people/erase", params={"email": PEOPLE[2]})
        assert confirm.status_code == 200 and "cannot be" in confirm.text
        token = csrf_of(confirm)
        unconfirmed = h.http.post("/ui/people/erase", data={"csrf": token, "email": PEOPLE[2]})
        assert unconfirmed.status_code == 422
        erased = h.http.post(
            "/ui/people/erase", data={"csrf": token, "email": PEOPLE[2], "confirm": "yes"}
        )
        assert erased.status_code == 303
        assert h.read(lambda tx: tx.subscriber(PEOPLE[2])) is None
        gone = h.http.get("/ui/people", params={"email": PEOPLE[2]})
        assert "No subscriber" in gone.text


def test_stored_text_is_escaped_and_the_message_body_is_sandboxed(tmp_path: Path) -> None:
    with Harness(dashboard_repo(tmp_path)) as h:
        hostile = '<script>alert("x")</script>'
        h.post_event(
            "subscriber.added", "eve@example.com", subscriber={"fields": {"name": hostile}}
        )
        h.drain()
        page = h.http.get("/ui/people", params={"email": "eve@example.com"}).text
        assert hostile not in page and "&lt;script&gt;" in page
        mail = next(iter(h.read(lambda tx: tx.messages(10, "welcome"))))
        assert hostile not in h.http.get(f"/ui/messages/{mail.id}").text
        h.advance(timedelta(days=2, hours=1))
        h.drain()
        nudge = h.read(lambda tx: tx.messages(10, "nudge"))[0]
        shown = h.http.get(f"/ui/messages/{nudge.id}").text
        assert f'<iframe class="mail" sandbox="" src="/ui/messages/{nudge.id}/html"' in shown
        body = h.http.get(f"/ui/messages/{nudge.id}/html")
        assert body.headers["content-security-policy"] == (
            "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
        )
        assert "<b>eve@example.com</b>" in body.text


def test_the_loopback_gate_covers_the_dashboard(tmp_path: Path) -> None:
    with Harness(dashboard_repo(tmp_path)) as h:
        populate(h)
        assert h.http.get("/ui", headers={"Host": "evil.example"}).status_code == 400
        page = h.http.get("/ui/automations/nudge")
        url = f"/ui/automations/nudge/pending/{pending_ids(h)[0]}/remove"
        foreign = h.http.post(
            url, data={"csrf": csrf_of(page)}, headers={"Origin": "https://evil.example"}
        )
        assert foreign.status_code == 403
        assert len(pending_ids(h)) == len(PEOPLE)


def test_with_api_keys_pages_need_a_signed_in_session(tmp_path: Path) -> None:
    with Harness(dashboard_repo(tmp_path), environ=KEYED) as h:
        populate_keyed(h)
        redirect = h.http.get("/ui/automations/nudge")
        assert redirect.status_code == 303
        assert redirect.headers["location"] == "/ui/sign-in?next=/ui/automations/nudge"
        form = h.http.get("/ui/sign-in?next=/ui/automations/nudge")
        token = csrf_of(form)
        wrong = h.http.post("/ui/sign-in", data={"csrf": token, "api_key": "nope"})
        assert wrong.status_code == 401 and "not one of the runner's API keys" in wrong.text
        no_token = h.http.post("/ui/sign-in", data={"api_key": KEY})
        assert no_token.status_code == 303 and no_token.headers["location"] == "/ui/sign-in"
        signed = h.http.post(
            "/ui/sign-in", data={"csrf": token, "api_key": KEY, "next": "https://evil.example/"}
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/ui"
        cookie = signed.headers["set-cookie"]
        assert KEY not in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        for path in PAGES:
            assert h.http.get(path).status_code == 200, path
        # A forged session (another signature) is not signed in.
        value = h.http.cookies[sessions.COOKIE]
        forged = value[:-4] + ("0000" if not value.endswith("0000") else "1111")
        outsider = httpx.get(f"{h.url}/ui", cookies={sessions.COOKIE: forged})
        assert outsider.status_code == 303
        out = h.http.post("/ui/sign-out", data={"csrf": csrf_of(h.http.get("/ui"))})
        assert out.status_code == 303
        assert h.http.get("/ui").status_code == 303


def populate_keyed(h: Harness) -> None:
    """populate() with the API key on the event posts."""
    auth = {"Authorization": f"Bearer {KEY}"}
    for email in PEOPLE:
        assert h.post_event("subscriber.added", email, headers=auth).status_code == 202
    h.drain()


def test_stats_by_revision_query_is_checked(tmp_path: Path) -> None:
    with Harness(dashboard_repo(tmp_path)) as h:
        populate(h)
        bad = h.http.get("/v1/automations/welcome/stats", params={"by": "day"})
        assert bad.status_code == 422 and bad.json()["field"] == "by"
        found = h.http.get("/v1/automations/welcome/stats", params={"by": "revision"}).json()
        assert found["by"] == "revision"
        (only,) = found["revisions"]
        assert (only["revision"], only["sent"], only["delivered"]) == (1, 3, 3)
        assert (only["unique_openers"], only["unique_clickers"]) == (1, 1)
        assert only["open_rate"] == pytest.approx(1 / 3)


def test_banners_for_a_failed_reload_and_a_paused_provider(tmp_path: Path) -> None:
    with Harness(dashboard_repo(tmp_path)) as h:
        assert "alert" not in h.http.get("/ui").text
        failed = ReloadResult("failed", at=h.clock.now(), reason="watch", error="disk <gone>")
        h.write(lambda tx: record_summary(tx, failed, None))
        assert h.worker is not None
        h.worker.providers.gate.pause_provider("default", h.clock.now())
        page = h.http.get("/ui").text
        assert "The last reload failed (failed, 2026-03-02 09:00:00 UTC): disk &lt;gone&gt;" in page
        assert "Provider <strong>default</strong> is paused" in page


def test_commits_link_to_the_repository_and_applied_files_are_highlighted(tmp_path: Path) -> None:
    sha = SHA
    with Harness(dashboard_repo(tmp_path / "plain"), commit=sha) as h:  # no web URL
        listed = h.http.get("/ui").text
        assert f"<code>{sha[:7]}</code>" in listed and 'class="commit"' not in listed
    repo = dashboard_repo(tmp_path, linked=True)
    (repo / "templates" / "promo.html").write_text("<p>{{ subscriber.email }}</p></pre>\n")
    with Harness(repo, commit=sha) as h:
        populate(h)
        link = (
            f'<a class="commit" href="{WEB_URL}/commit/{sha}"'
            f' rel="noopener noreferrer" title="Commit {sha} in the repository">'
            "<code>0123456</code></a>"
        )
        assert h.http.get("/ui").text.count(link) == 3  # every automation's applied commit
        detail = h.http.get("/ui/automations/welcome").text
        facts, _, rest = detail.partition('<h2 id="queue">')
        by_revision = rest.partition('id="by-revision"')[2].partition("<h3>")[0]
        history = rest.partition("<h2>History</h2>")[2]
        assert link in facts and link in by_revision and history.count(link) == 2
        # The applied YAML, highlighted and escaped (a scalar's `<` stays text).
        yaml = rest.partition("<h2>Applied files</h2>")[2].partition("<h2>")[0]
        assert '<pre class="hl"><code><span class="nt">id</span><span class="p">:</span>' in yaml
        assert '<span class="s">&lt;news@shop.test&gt;"</span>' in yaml
        # A template file, highlighted as HTML with Jinja; `</pre>` in it cannot close ours.
        promo = h.http.get("/ui/automations/promo").text
        promo = promo.partition("Template <code>../templates/promo.html</code> (html_file)")[2]
        assert '<span class="cp">{{</span>' in promo and '<span class="nt">p</span>' in promo
        shown = promo.partition("<pre")[2].partition("</pre>")[0]
        assert '&lt;/</span><span class="nt">pre</span>' in shown
