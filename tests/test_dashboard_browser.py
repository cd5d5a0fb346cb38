"""The dashboard in a real headless Chromium (Debian's, driven by Playwright; nothing is
downloaded) against a real `serve`: every page loads without console errors or requests
leaving the machine, passes an axe-core accessibility scan without serious or critical
violations, works by keyboard and on a phone width, and its forms work end to end.

Screenshots of each page are saved under tests/output/dashboard/ (ignored by git).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from runner.core.records import SendStatus
from runner.review.screenshot import ARGS  # the preview's own flags: no network but the page
from tests.dashboard_fixture import PEOPLE, SHA, WEB_URL, dashboard_repo, populate
from tests.harness import Harness

CHROMIUM = os.environ.get("POSTWRIGHT_CHROMIUM", "/usr/bin/chromium")
OUTPUT = Path(__file__).resolve().parent / "output" / "dashboard"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 800}

REQUIRED = os.environ.get("POSTWRIGHT_REQUIRE_CHROMIUM") == "1"  # set by .ci/run

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")
axe_module = pytest.importorskip(
    "axe_playwright_python.sync_playwright", reason="axe-playwright-python is missing"
)
if shutil.which(CHROMIUM) is None:
    MISSING = f"no Chromium at {CHROMIUM} (install the Debian package `chromium`)"
    if REQUIRED:
        pytest.fail(f"POSTWRIGHT_REQUIRE_CHROMIUM=1 but {MISSING}", pytrace=False)
    pytest.skip(f"browser tests skipped: {MISSING}", allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


class Watched:
    """A page whose console errors, page errors and outside requests are collected."""

    def __init__(self, browser: Any, base: str, viewport: dict[str, int] = DESKTOP) -> None:
        self.context = browser.new_context(viewport=viewport)
        self.page = self.context.new_page()
        self.base = base
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("request", self._request)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _request(self, request: Any) -> None:
        host = urlsplit(request.url).hostname
        if request.url.startswith(("http:", "https:")) and host != "127.0.0.1":
            self.outside.append(request.url)

    def open(self, path: str) -> Any:
        response = self.page.goto(self.base + path)
        assert response is not None and response.status == 200, path
        return response

    def close(self) -> None:
        self.context.close()


def axe_serious(page: Any) -> list[str]:
    """Serious and critical accessibility violations of the page, described."""
    results = axe_module.Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]


PAGE_OVERFLOW = """() => {
  const scrolling = document.scrollingElement;
  if (scrolling.scrollWidth <= window.innerWidth) return null;
  const wide = [...document.querySelectorAll("main *")]
    .filter(e => e.getBoundingClientRect().right > window.innerWidth && !e.closest(".scroll"))
    .slice(0, 3).map(e => e.tagName + "." + e.className);
  return {scrollWidth: scrolling.scrollWidth, innerWidth: window.innerWidth, wide: wide};
}"""


def page_overflow(page: Any) -> Any:
    """None when the page is no wider than the window; else its width and what sticks out."""
    return page.evaluate(PAGE_OVERFLOW)


def shot(page: Any, name: str) -> Path:
    """A full-page screenshot, plus the first screen alone (the README shows two of those)."""
    path = OUTPUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.screenshot(path=str(OUTPUT / f"{name}-screen.png"))
    print(f"screenshot: {path}")
    return path


def pages(h: Harness) -> dict[str, str]:
    message = h.read(lambda tx: tx.messages(1, "nudge"))[0]
    return {
        "automations": "/ui",
        "automation": "/ui/automations/welcome",
        "queue": "/ui/automations/nudge",
        "template": "/ui/automations/promo",
        "person": f"/ui/people?email={PEOPLE[0]}",
        "messages": "/ui/messages",
        "message": f"/ui/messages/{message.id}",
        "erase": f"/ui/people/erase?email={PEOPLE[0]}",
    }


def sent_nudge(h: Harness) -> None:
    """One nudge sent (a message with an HTML body), the other people's still pending."""
    first = h.read(lambda tx: tx.pending_sends("nudge", [SendStatus.PENDING], 10))[-1]
    assert h.write(lambda tx: tx.send_now(first.id, h.clock.now()))
    h.drain()


def test_every_page_is_clean_accessible_and_saved(browser: Any, tmp_path: Path) -> None:
    with Harness(dashboard_repo(tmp_path, linked=True), commit=SHA) as h:
        populate(h)
        sent_nudge(h)
        for viewport, suffix in ((DESKTOP, ""), (PHONE, "-phone")):
            watched = Watched(browser, h.url, viewport)
            page = watched.page
            try:
                for name, path in pages(h).items():
                    watched.open(path)
                    # Open the applied files: axe checks the highlighted tokens' contrast too.
                    page.evaluate(
                        "document.querySelectorAll('details').forEach(d => d.open = true)"
                    )
                    assert axe_serious(page) == [], (name, suffix)
                    shot(page, name + suffix)
                    if suffix:  # the page as a whole never scrolls sideways on a phone
                        assert page_overflow(page) is None, name
                assert watched.errors == [] and watched.outside == []
                # The last automation page showed its template highlighted, and its commit
                # linked to the repository (never followed: nothing leaves the machine).
                watched.open("/ui/automations/promo")
                assert page.locator("pre.hl span.cp").count() > 0
                link = page.locator("a.commit").first
                assert link.get_attribute("href") == f"{WEB_URL}/commit/{SHA}"
                assert "noopener" in (link.get_attribute("rel") or "").split()
                if suffix:
                    watched.open("/ui")
                    wide_tables_scroll_in_their_region(page)
                    watched.open("/ui/automations/nudge")
                    queue_actions_fit_the_screen(page)
            finally:
                watched.close()


def wide_tables_scroll_in_their_region(page: Any) -> None:
    """On a phone the automations table is wider than the screen: its own region scrolls, and
    that region is reachable by keyboard and named; the probe sees a page that overflows."""
    region = page.get_by_role("region", name="Automations table")
    assert region.get_attribute("tabindex") == "0"
    widths = region.evaluate("e => [e.scrollWidth, e.clientWidth]")
    assert widths[0] > widths[1], widths
    region.focus()
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    # Through the CSSOM: the pages' policy refuses inline style attributes.
    page.evaluate(
        "() => { const wide = document.createElement('div'); wide.style.width = '2000px';"
        " wide.textContent = 'wide'; document.querySelector('main').append(wide); }"
    )
    assert page_overflow(page) == {"scrollWidth": 2012, "innerWidth": 375, "wide": ["DIV."]}


def queue_actions_fit_the_screen(page: Any) -> None:
    """On a phone the pending queue reflows instead of scrolling: every row's buttons are on
    the screen without scrolling its region sideways."""
    region = page.get_by_role("region", name="Pending queue table")
    widths = region.evaluate("e => [e.scrollWidth, e.clientWidth]")
    assert widths[0] <= widths[1], widths
    buttons = page.get_by_role("button", name="Send now to ")
    assert buttons.count() > 0
    inner = page.evaluate("window.innerWidth")
    for index in range(buttons.count()):
        box = buttons.nth(index).bounding_box()
        assert box is not None and 0 <= box["x"] and box["x"] + box["width"] <= inner, box


def test_the_message_body_runs_no_script_and_loads_nothing(browser: Any, tmp_path: Path) -> None:
    with Harness(dashboard_repo(tmp_path)) as h:
        populate(h)
        sent_nudge(h)
        message = h.read(lambda tx: tx.messages(1, "nudge"))[0]
        # A remote image would load if the frame's policy allowed it: this one is on our
        # own server, so only the policy can stop it.
        beacon = f"{h.url}/healthz?from=mail"
        hostile = (
            '<p id="x">mail</p><script>parent.document.title="pwned";'
            'document.getElementById("x").textContent="ran"</script>'
            f'<img alt="" src="{beacon}"><link rel="stylesheet" href="{beacon}&css">'
        )
        changed = dataclasses.replace(message, html=hostile)
        h.write(lambda tx: tx.rewrite_messages([changed]))
        watched = Watched(browser, h.url)
        fetched: list[str] = []
        watched.page.on("requestfinished", lambda request: fetched.append(request.url))
        try:
            watched.open(f"/ui/messages/{message.id}")
            frame = watched.page.frame_locator("iframe.mail")
            assert frame.locator("#x").inner_text() == "mail"  # the script did not run
            assert watched.page.title() != "pwned"
            assert [url for url in fetched if "from=mail" in url] == []
            assert any(url.endswith(f"/ui/messages/{message.id}/html") for url in fetched)
        finally:
            watched.close()


def test_keyboard_reaches_the_content_through_the_skip_link(browser: Any, tmp_path: Path) -> None:
    with Harness(dashboard_repo(tmp_path)) as h:
        watched = Watched(browser, h.url)
        try:
            watched.open("/ui")
            watched.page.keyboard.press("Tab")
            focused = watched.page.evaluate("document.activeElement.textContent")
            assert focused == "Skip to content"
            box = watched.page.locator("a.skip").bounding_box()
            assert box is not None and box["x"] >= 0  # shown while focused
            outline = watched.page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert outline == "solid"
            watched.page.keyboard.press("Enter")
            assert watched.page.evaluate("document.activeElement.id") == "main"
            watched.page.keyboard.press("Tab")
            assert watched.page.evaluate("document.activeElement.tagName") in ("A", "SELECT")
        finally:
            watched.close()


def test_queue_and_people_forms_work_end_to_end(browser: Any, tmp_path: Path) -> None:
    with Harness(dashboard_repo(tmp_path)) as h:
        populate(h)
        watched = Watched(browser, h.url)
        page = watched.page
        try:
            watched.open("/ui/automations/nudge")
            page.get_by_role("button", name=f"Remove the send to {PEOPLE[0]}").click()
            page.wait_for_url("**/ui/automations/nudge?notice=removed")
            assert "The send was removed from the queue." in page.inner_text("main")
            page.get_by_role("button", name=f"Send now to {PEOPLE[1]}").click()
            page.wait_for_url("**notice=send_now")
            h.drain()
            history = h.read(lambda tx: tx.history("nudge"))
            assert [e.value for e in history if e.kind == "pending"] == ["removed", "send_now"]
            assert {m.to for m in h.read(lambda tx: tx.messages(10, "nudge"))} == {PEOPLE[1]}
            # A hard bounce suppresses cat; the People page lifts it.
            mail = next(
                m for m in h.read(lambda tx: tx.messages(10, "welcome")) if m.to == PEOPLE[2]
            )
            bounce = {"id": "b1", "type": "bounced", "message_id": mail.id, "bounce": "hard"}
            assert h.http.post("/v1/providers/default/webhook", json=bounce).status_code < 300
            h.drain()
            watched.open("/ui/people")
            page.get_by_label("Email").fill(PEOPLE[2])
            page.get_by_role("button", name="Look up").click()
            page.get_by_label("Why lift it (recorded)").fill("mailbox fixed")
            page.get_by_role("button", name="Lift the suppression").click()
            page.wait_for_url("**notice=unsuppressed")
            person = h.read(lambda tx: tx.subscriber(PEOPLE[2]))
            assert person is not None and person.suppressed is None
            assert watched.errors == []
        finally:
            watched.close()


def test_signing_in_with_an_api_key(browser: Any, tmp_path: Path) -> None:
    key = "k" * 40
    environ = {"POSTWRIGHT_API_KEYS": key, "POSTWRIGHT_PUBLIC_URL": "https://mail.shop.test"}
    with Harness(dashboard_repo(tmp_path), environ=environ) as h:
        watched = Watched(browser, h.url)
        page = watched.page
        try:
            page.goto(h.url + "/ui/people")
            assert page.url.endswith("/ui/sign-in?next=/ui/people")
            assert axe_serious(page) == []
            shot(page, "sign-in")
            page.get_by_label("API key").fill(key)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/ui/people")
            cookies = {c["name"]: c for c in watched.context.cookies()}
            session = cookies["pw_session"]
            assert session["httpOnly"] and session["sameSite"] == "Strict"
            assert key not in session["value"]
            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url("**/ui/sign-in")
            assert watched.errors == []
        finally:
            watched.close()
