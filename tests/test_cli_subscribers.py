"""`postwright subscribers list|show|unsuppress|delete` through main(argv), on the SQLite store
a real runner left in a temp repository."""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
  subject: Reminder
  text: "Hi {{ subscriber.email }}"
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POSTWRIGHT_API_KEYS", "POSTWRIGHT_DATABASE_URL", "POSTWRIGHT_FAKE_CLOCK"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    """Ann (welcomed, a reminder pending, hard-bounced), Bob, and Cy (not processed yet)."""
    write_repo(tmp_path, {"welcome": WELCOME, "reminder": REMINDER})
    with Harness(tmp_path) as h:
        h.post_event("signup", "ann@shop.test", subscriber={"fields": {"name": "Ann"}})
        h.post_event("signup", "bob@shop.test", subscriber={"groups": ["vip"]})
        h.drain()
        welcome = next(
            m for m in h.http.get("/v1/outbox").json()["messages"] if m["to"] == "ann@shop.test"
        )
        bounce = {"id": "b-1", "type": "bounced", "message_id": welcome["id"]}
        assert h.http.post("/v1/providers/default/webhook", json=bounce).status_code == 202
        # Stored, not processed: the CLI catches up with it like the API does.
        h.post_event("signup", "cy@shop.test")
    yield tmp_path


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out)
    return code, out.getvalue()


def test_list_pages_and_filters(repo: Path) -> None:
    code, text = run("subscribers", "list", "--repo", str(repo))
    assert code == 0
    for email in ("ann@shop.test", "bob@shop.test", "cy@shop.test"):
        assert email in text
    assert "bounced" in text
    code, text = run("subscribers", "list", "--limit", "1", "--format", "json", "--repo", str(repo))
    page = json.loads(text)
    assert [p["email"] for p in page["subscribers"]] == ["ann@shop.test"]
    cursor = page["next_cursor"]
    _, text = run(
        "subscribers", "list", "--cursor", cursor, "--format", "json", "--repo", str(repo)
    )
    assert [p["email"] for p in json.loads(text)["subscribers"]] == [
        "bob@shop.test",
        "cy@shop.test",
    ]
    _, text = run(
        "subscribers", "list", "--suppressed", "true", "--format", "json", "--repo", str(repo)
    )
    assert [p["email"] for p in json.loads(text)["subscribers"]] == ["ann@shop.test"]
    _, text = run("subscribers", "list", "--group", "vip", "--format", "json", "--repo", str(repo))
    assert [p["email"] for p in json.loads(text)["subscribers"]] == ["bob@shop.test"]
    assert run("subscribers", "list", "--cursor", "bad", "--repo", str(repo))[0] == 2
    assert run("subscribers", "list", "--limit", "0", "--repo", str(repo))[0] == 2


def test_show(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run("subscribers", "show", " ANN@shop.test", "--repo", str(repo))
    assert code == 0
    assert "ann@shop.test" in text and '"name": "Ann"' in text
    assert "suppression: bounced" in text and "b-1" in text
    assert "reminder" in text and "Welcome Ann" in text
    _, raw = run("subscribers", "show", "ann@shop.test", "--format", "json", "--repo", str(repo))
    view: dict[str, Any] = json.loads(raw)
    assert view["suppression"]["source"]["event_id"] == "b-1"
    assert [m["events"][0]["type"] for m in view["messages"]] == ["bounced"]
    assert run("subscribers", "show", "nobody@shop.test", "--repo", str(repo))[0] == 1
    assert "no subscriber nobody@shop.test" in capsys.readouterr().err
    assert run("subscribers", "show", "not an address", "--repo", str(repo))[0] == 2


def test_unsuppress_records_who_and_why(repo: Path) -> None:
    code, text = run(
        "subscribers", "unsuppress", "ann@shop.test", "--by", "ops", "--note", "fixed",
        "--repo", str(repo),
    )  # fmt: skip
    assert code == 0 and "bounced suppression lifted by ops" in text
    _, raw = run("subscribers", "show", "ann@shop.test", "--format", "json", "--repo", str(repo))
    view = json.loads(raw)
    assert view["suppression"] is None
    assert [(x["by"], x["note"]) for x in view["lifted_suppressions"]] == [("ops", "fixed")]
    code, text = run("subscribers", "unsuppress", "ann@shop.test", "--repo", str(repo))
    assert code == 0 and "not suppressed" in text


def test_unsuppress_refuses_an_unsubscribe(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Harness(repo) as h:
        h.post_event("subscriber.unsubscribed", "bob@shop.test")
    assert run("subscribers", "unsuppress", "bob@shop.test", "--repo", str(repo))[0] == 1
    assert "resubscribed" in capsys.readouterr().err


def test_delete_erases_from_the_cli(repo: Path) -> None:
    code, text = run("subscribers", "delete", "Ann@Shop.test", "--repo", str(repo))
    assert code == 0 and "ann@shop.test: erased" in text
    assert run("subscribers", "show", "ann@shop.test", "--repo", str(repo))[0] == 1
    assert run("subscribers", "delete", "ann@shop.test", "--repo", str(repo))[0] == 1
    database = repo / ".postwright" / "postwright.db"
    with sqlite3.connect(database) as db:
        (cancelled,) = db.execute(
            "SELECT COUNT(*) FROM pending_sends WHERE reason = 'deleted_subscriber'"
        ).fetchone()
    assert cancelled == 1
    files = [database, database.with_name("postwright.db-wal")]
    assert all(b"ann@shop.test" not in f.read_bytes() for f in files if f.exists())
    code, text = run("outbox", "--repo", str(repo))
    assert "ann@shop.test" not in text and "bob@shop.test" in text
