"""`postwright preview` on real git repositories: rendered emails, real PNG screenshots from
the system's Chromium, and an index a reviewer reads; `--send-to` against a fake provider."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from runner.cli.main import main
from runner.review.screenshot import BROWSER_ENV, WIDTH, find_browser
from tests.fakes import serve
from tests.fakes.postmark import FakePostmark
from tests.gitrepo import GitRepo
from tests.pngcheck import read_png

NOW = "2026-12-01T00:00:00Z"
REQUIRE_BROWSER = os.environ.get("POSTWRIGHT_REQUIRE_CHROMIUM") == "1"

DIGEST = """\
id: digest
status: running
trigger:
  type: schedule
  cron: "0 8 * * mon"
  timezone: Europe/Berlin
send_window: {days: [mon, tue], start: "08:00", end: "12:00"}
email:
  from: "Shop <digest@shop.test>"
  subject: "This week, {{ subscriber.fields.first_name }}"
  html_file: ../templates/digest.html
"""
DIGEST_HTML = """\
<html><body style="background:#fff">
<h1 style="color:#c00">Hello {{ subscriber.fields.first_name }}</h1>
<p>Your plan: {{ subscriber.fields.plan }}</p>
<img src="https://images.shop.test/banner.png" alt="banner">
</body></html>
"""
ORDER = """\
id: order
status: running
retrigger: true
trigger: {type: api}
wait: 2h
repeat: {every: 1d, times: 2}
email:
  from: "Shop <orders@shop.test>"
  subject: "Order {{ event.data.order_number }}"
  html: |
    <p>Order {{ event.data.order_number }}</p>
    <ul>{% for item in event.data["items"] %}
    <li>{{ item.quantity }} x {{ item.name }}</li>{% endfor %}</ul>
  text: "Order {{ event.data.order_number }} for {{ subscriber.email }}"
"""
CONFIG = """\
providers:
  default:
    type: postmark
    server_token_env: PM_TOKEN
    base_url: {url}
"""


def run(repo: GitRepo, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["preview", *argv, "--repo", str(repo.path), "--now", NOW], stdout=out)
    return code, out.getvalue()


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.write("automations/digest.yaml", DIGEST)
    repo.write("templates/digest.html", DIGEST_HTML)
    repo.write("automations/order.yaml", ORDER)
    repo.commit("base")
    return repo


@pytest.fixture
def browser() -> str:
    found = find_browser()
    if found is None:
        if REQUIRE_BROWSER:
            pytest.fail("no Chromium installed (POSTWRIGHT_REQUIRE_CHROMIUM=1)")
        pytest.skip("no Chromium installed")
    return found


def test_a_paused_schedule_is_rendered_screenshotted_and_described(
    repo: GitRepo, tmp_path: Path, browser: str
) -> None:
    repo.write("automations/digest.yaml", DIGEST.replace("status: running", "status: paused"))
    asked: list[str] = []

    async def image(request: Request) -> Response:
        asked.append(request.url.path)
        return Response(b"", media_type="image/png")

    out = tmp_path / "preview"
    with serve(Starlette(routes=[Route("/{path:path}", image)])) as url:
        # A remote image and stylesheet: the screenshot must not fetch them.
        remote = f'<img src="{url}/pixel.png"><link rel="stylesheet" href="{url}/s.css">'
        repo.write("templates/digest.html", DIGEST_HTML.replace("</body>", remote + "</body>"))
        code, printed = run(repo, "--out", str(out))
    assert asked == []
    assert code == 0, printed
    assert "1 automation previewed" in printed
    folder = out / "digest"
    html = (folder / "email.html").read_text()
    assert "Hello Alex" in html and "Your plan: pro" in html  # generated, plausible fields
    assert "Hello Alex" in (folder / "email.txt").read_text()  # the HTML's text (no text part)
    png = read_png((folder / "email.png").read_bytes())
    assert png.width == WIDTH and png.height >= 100
    assert png.non_white_pixels() > 500  # the red heading and the text are drawn
    index = (out / "index.md").read_text()
    assert "## `digest`" in index
    assert "**Lifecycle:** running → paused" in index
    assert "| Subject | `This week, {{ subscriber.fields.first_name }}` | (unchanged) |" in index
    assert "Rendered subject: `This week, Alex`" in index
    assert "Window: Mon, Tue, 08:00 to 12:00 (the runner's time zone)" in index
    firings = index.split("Next five firings:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert firings == [
        f"- Mon 2026-12-{day:02d} 08:00 Europe/Berlin (2026-12-{day:02d}T07:00Z)"
        for day in (7, 14, 21, 28)
    ] + ["- Mon 2027-01-04 08:00 Europe/Berlin (2027-01-04T07:00Z)"]
    assert "order" not in index  # untouched automations are left out


def test_with_base_every_automation_changed_since_base_is_previewed(
    repo: GitRepo, tmp_path: Path
) -> None:
    base = repo.head()
    repo.write("automations/order.yaml", ORDER.replace("Order {{", "Your order {{", 1))
    repo.commit("reword the order subject")
    repo.write("automations/digest.yaml", DIGEST.replace("status: running", "status: stopped"))
    repo.commit("stop the digest")
    out = tmp_path / "preview"
    code, printed = run(repo, "--base", base, "--out", str(out), "--no-screenshots")
    assert code == 0, printed
    index = (out / "index.md").read_text()
    assert f"# Postwright preview: `{base[:7]}` → `{repo.head()[:7]}`" in index
    assert "| Subject | `Order {{ event.data.order_number }}` | " in index
    assert "`Your order {{ event.data.order_number }}` |" in index
    assert "**Blocked:** edit-not-allowed" in index  # a running automation's edit is refused
    assert "**Lifecycle:** running → stopped" in index
    assert "- Wait: 2h after the trigger" in index and "- Repeat: 2 more, every 1d" in index
    html = (out / "order" / "email.html").read_text()
    # A key a loop walks gets a list of two items with the keys the loop reads.
    assert "<li>2 x Sample item</li>" in html and "<li>2 x Sample item 2</li>" in html
    assert (out / "order" / "email.txt").read_text() == "Order 1042 for alex@example.test"
    assert not (out / "order" / "email.png").exists()


def test_a_template_file_change_previews_the_automation_using_it(
    repo: GitRepo, tmp_path: Path
) -> None:
    repo.write("templates/digest.html", DIGEST_HTML.replace("Hello", "Good morning"))
    out = tmp_path / "preview"
    code, printed = run(repo, "--out", str(out), "--no-screenshots")
    assert code == 0, printed
    assert "Good morning Alex" in (out / "digest" / "email.html").read_text()
    index = (out / "index.md").read_text()
    assert "## `digest` (modified)" in index and "## `order`" not in index


def test_deleted_invalid_and_unrenderable_automations_are_named(
    repo: GitRepo, tmp_path: Path
) -> None:
    repo.remove("automations/order.yaml")
    repo.write("automations/digest.yaml", DIGEST + "colour: blue\n")
    repo.write(
        "automations/odd.yaml",
        DIGEST.replace("id: digest", "id: odd")
        .replace("status: running", "status: draft")
        .replace("{{ subscriber.fields.first_name }}", "{{ subscriber.fields.name.first }}"),
    )
    out = tmp_path / "preview"
    code, printed = run(repo, "--out", str(out), "--no-screenshots")
    assert code == 1 and "render error in odd" in printed
    index = (out / "index.md").read_text()
    order = index.split("## `order` (deleted)", 1)[1]
    assert "**Lifecycle:** deleted (the runner keeps its history)" in order
    assert "| Subject | `Order {{ event.data.order_number }}` | — |" in order
    digest = index.split("## `digest` (invalid)", 1)[1]
    assert "not rendered: the new version does not validate (schema: " in digest
    assert "> render error:" in index.split("## `odd`")[1]
    assert not (out / "order").exists() and not (out / "odd").exists()


def test_samples_described_in_the_repository_win(repo: GitRepo, tmp_path: Path) -> None:
    repo.write(
        "samples/order.yaml",
        "subscriber: {email: Kim@Shop.Test, fields: {first_name: Kim}}\n"
        "event: {data: {order_number: A-77}}\n",
    )
    repo.write(
        "scenarios/launch.yaml",
        "subscribers:\n  - {email: sam@shop.test, fields: {first_name: Sam, plan: gold}}\n",
    )
    repo.write("automations/order.yaml", ORDER.replace("wait: 2h", "wait: 3h"))
    repo.write("automations/digest.yaml", DIGEST.replace("running", "paused"))
    out = tmp_path / "preview"
    code, printed = run(repo, "--out", str(out), "--no-screenshots")
    assert code == 0, printed
    assert (out / "order" / "email.txt").read_text() == "Order A-77 for kim@shop.test"
    assert "Your plan: gold" in (out / "digest" / "email.html").read_text()
    index = (out / "index.md").read_text()
    assert "Sample subscriber and event: samples/order.yaml" in index
    assert "Sample subscriber and event: scenarios/launch.yaml" in index


def test_without_a_browser_the_screenshots_are_skipped_with_a_reason(
    repo: GitRepo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(BROWSER_ENV, str(tmp_path / "no-such-chromium"))
    repo.write("automations/digest.yaml", DIGEST.replace("running", "paused"))
    out = tmp_path / "preview"
    code, _ = run(repo, "--out", str(out))
    assert code == 0
    assert "no Chromium found" in capsys.readouterr().err
    assert (out / "digest" / "email.html").exists()
    assert not (out / "digest" / "email.png").exists()
    assert "screenshot: no Chromium found" in (out / "index.md").read_text()


def test_no_change_writes_an_index_saying_so(repo: GitRepo, tmp_path: Path) -> None:
    code, _ = run(repo, "--out", str(tmp_path / "preview"), "--no-screenshots")
    assert code == 0
    assert "No automation changes." in (tmp_path / "preview" / "index.md").read_text()


def test_send_to_reaches_the_provider_as_a_test_and_records_nothing(
    repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakePostmark(token="pm-token")
    monkeypatch.setenv("PM_TOKEN", "pm-token")
    with serve(fake.app()) as url:
        repo.write("postwright.yaml", CONFIG.format(url=url))
        code, printed = run(repo, "order", "--send-to", "Reviewer@Shop.Test")
    assert code == 0, printed
    (sent,) = fake.accepted
    assert sent["Subject"] == "[TEST] Order 1042"
    assert sent["To"] == "Reviewer@Shop.Test"
    assert "Order 1042 for alex@example.test" in sent["TextBody"]
    assert "nothing was recorded" in printed
    # No store was opened: no message, no send, no trigger, nothing in the stats.
    assert not (repo.path / ".postwright").exists()


def test_send_to_with_the_outbox_explains_it_needs_a_real_provider(
    repo: GitRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run(repo, "order", "--send-to", "a@shop.test")
    assert code == 2
    assert "outbox" in capsys.readouterr().err


def test_send_to_needs_an_id_and_preview_needs_out(
    repo: GitRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(repo, "--send-to", "a@shop.test")[0] == 2
    assert run(repo, "order", "--send-to", "not an address")[0] == 2
    assert run(repo)[0] == 2
    assert "--out" in capsys.readouterr().err
    (repo.path / "taken").write_text("a file, not a folder")
    assert run(repo, "--out", str(repo.path / "taken" / "x"))[0] == 2
    assert "--out" in capsys.readouterr().err
