"""The runner commands: serve's refusals, stats, pending, outbox and render on a temp repo."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.cli.main import main
from tests.harness import WELCOME, Harness, write_repo

REMINDER = """\
id: reminder
status: running
trigger:
  type: event
  event: signup
wait: 1d
email:
  from: "Shop <news@shop.test>"
  subject: "Hi {{ subscriber.fields.name }}"
  html: "<p>Plan {{ event.data.plan }}</p>"
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POSTWRIGHT_API_KEYS", "POSTWRIGHT_DATABASE_URL", "POSTWRIGHT_FAKE_CLOCK"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    """A repo whose store holds one sent welcome and two pending reminders."""
    write_repo(tmp_path, {"welcome": WELCOME, "reminder": REMINDER})
    with Harness(tmp_path) as h:
        h.post_event("signup", "a@shop.test", subscriber={"fields": {"name": "Ann"}})
        h.post_event("signup", "b@shop.test")
        h.drain()
    yield tmp_path


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out)
    return code, out.getvalue()


def test_serve_non_loopback_without_keys_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run("serve", "--host", "0.0.0.0", "--repo", str(tmp_path))
    assert code == 2
    assert "no API keys" in capsys.readouterr().err


def test_serve_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "postwright.yaml").write_text("api_keys_env: MISSING_KEYS\n", encoding="utf-8")
    code, _ = run("serve", "--repo", str(tmp_path))
    assert code == 2
    assert "MISSING_KEYS" in capsys.readouterr().err


def test_stats_table(repo: Path) -> None:
    code, text = run("stats", "--repo", str(repo))
    assert code == 0
    welcome = next(line for line in text.splitlines() if "welcome" in line)
    assert "running" in welcome
    assert "100.0%" not in welcome  # nothing opened yet
    assert "0.0%" in welcome
    code, one = run("stats", "reminder", "--repo", str(repo))
    assert code == 0
    assert "reminder" in one
    code, _ = run("stats", "nope", "--repo", str(repo))
    assert code == 2


def test_pending_list_send_now_and_remove(repo: Path) -> None:
    code, text = run("pending", "reminder", "--repo", str(repo))
    assert code == 0
    assert "a@shop.test" in text
    assert "b@shop.test" in text
    ids = [line.split()[1] for line in text.splitlines() if "@shop.test" in line]
    assert len(ids) == 2
    code, text = run("pending", "reminder", "--remove", ids[0], "--repo", str(repo))
    assert (code, text.strip()) == (0, f"{ids[0]}: removed")
    code, _ = run("pending", "reminder", "--remove", ids[0], "--repo", str(repo))
    assert code == 1
    code, text = run("pending", "reminder", "--send-now", ids[1], "--repo", str(repo))
    assert code == 0
    assert "due now" in text
    code, text = run("pending", "reminder", "--repo", str(repo))
    assert ids[0] not in text
    assert ids[1] in text


def test_outbox_list_and_show(repo: Path) -> None:
    code, text = run("outbox", "--repo", str(repo))
    assert code == 0
    assert "Welcome Ann" in text
    message_id = next(line.split()[1] for line in text.splitlines() if "Welcome Ann" in line)
    code, shown = run("outbox", "--show", message_id, "--repo", str(repo))
    assert code == 0
    assert "To: a@shop.test" in shown
    assert "Hello a@shop.test" in shown
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in shown


def test_render_preview(tmp_path: Path) -> None:
    write_repo(tmp_path, {"reminder": REMINDER})
    person = tmp_path / "person.json"
    person.write_text(json.dumps({"email": "Z@shop.test", "fields": {"name": "Zoe"}}), "utf-8")
    happened = tmp_path / "event.yaml"
    happened.write_text("name: signup\ndata: {plan: pro}\n", encoding="utf-8")
    code, text = run(
        "render",
        "reminder",
        "--subscriber",
        str(person),
        "--event",
        str(happened),
        "--repo",
        str(tmp_path),
    )
    assert code == 0
    assert "Subject: Hi Zoe" in text
    assert "<p>Plan pro</p>" in text


def test_render_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_repo(tmp_path, {"reminder": REMINDER})
    person = tmp_path / "person.json"
    person.write_text(json.dumps({"email": "z@shop.test"}), "utf-8")
    code, _ = run("render", "reminder", "--subscriber", str(person), "--repo", str(tmp_path))
    assert code == 1  # subscriber.fields.name is undefined: StrictUndefined
    assert "render error" in capsys.readouterr().err
    code, _ = run("render", "nope", "--subscriber", str(person), "--repo", str(tmp_path))
    assert code == 2


@pytest.mark.parametrize("make", ["symlink", "fifo"])
def test_render_refuses_hostile_template_files(
    tmp_path: Path, make: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # `render` reads templates through the same door as validate and serve: a symlink out
    # of the repository is never read (no secret reaches the preview), a FIFO never hangs.
    hostile = REMINDER.replace(
        '  html: "<p>Plan {{ event.data.plan }}</p>"', "  html_file: ../templates/body.html"
    )
    write_repo(tmp_path, {"reminder": hostile})
    (tmp_path / "templates").mkdir(exist_ok=True)
    body = tmp_path / "templates" / "body.html"
    if make == "symlink":
        body.symlink_to("/proc/self/environ")
    else:
        os.mkfifo(body)
    person = tmp_path / "person.json"
    person.write_text(json.dumps({"email": "z@shop.test", "fields": {"name": "Zoe"}}), "utf-8")
    started = time.monotonic()
    code, text = run("render", "reminder", "--subscriber", str(person), "--repo", str(tmp_path))
    assert time.monotonic() - started < 10
    assert code != 0
    err = capsys.readouterr().err
    assert "templates/body.html" in err
    assert "PATH=" not in text + err
