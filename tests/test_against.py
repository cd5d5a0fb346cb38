"""`validate --against` and `plan --against`: the working tree against a real running app.

The runner is tests/harness.py's app (uvicorn, SQLite, a fake clock); the CLI fetches
its applied state over HTTP exactly as CI would.
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from runner.checking.against import applied_version, children_of, fetch_deployed
from runner.checking.plan import Impact
from runner.checking.runner_client import RunnerClient, RunnerUnavailable
from runner.checking.tree import Tree
from runner.cli.main import main
from runner.core import findings
from runner.core.loader import load_automation
from runner.core.version import Version
from runner.errors import UsageError
from tests.gitrepo import GitRepo
from tests.harness import START, WELCOME, Harness, write_repo

NOW = (START + timedelta(minutes=1)).isoformat()
KEYS = {"POSTWRIGHT_API_KEYS": "key-1", "POSTWRIGHT_PUBLIC_URL": "https://mail.shop.test"}

# Scheduled to start an hour before the runner's clock: applied, it is running there.
LAUNCH = """\
id: launch
status: scheduled
start_at: 2026-03-02T08:00:00Z
trigger:
  type: event
  event: signup
email:
  from: "Shop <news@shop.test>"
  subject: Launch
  text: "Hello"
"""
REMINDER = """\
id: reminder
status: running
retrigger: true
trigger:
  type: event
  event: signup
wait: 2h
email:
  from: "Shop <news@shop.test>"
  subject: Reminder
  text: "Hi"
"""
DIGEST = REMINDER.replace("id: reminder", "id: digest").replace("wait: 2h", "wait: 3d")
OLD = WELCOME.replace("id: welcome", "id: old").replace("status: running", "status: draft")


def cli(*args: str) -> tuple[int, str, str]:
    out = io.StringIO()
    code = main(list(args), out)
    return code, out.getvalue(), ""


def edit(repo: Path, ident: str, old: str, new: str) -> None:
    path = repo / "automations" / f"{ident}.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[Harness]:
    write_repo(tmp_path, {"launch": LAUNCH, "welcome": WELCOME})
    with Harness(tmp_path) as harness:
        yield harness


# --- validate --against ------------------------------------------------------------


def test_edit_of_a_started_schedule_is_refused_against_the_runner(
    launched: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = launched.repo
    edit(repo, "launch", "subject: Launch", "subject: Launch day")
    # The files alone say `scheduled`: without the runner nothing compares the edit.
    assert cli("validate", "--repo", str(repo), "--now", NOW)[0] == 0
    code, out, _ = cli("validate", "--repo", str(repo), "--now", NOW, "--against", launched.url)
    assert code == 1
    assert "automations/launch.yaml" in out
    assert "error[edit-not-allowed]" in out
    assert "email.subject" in out


def test_clean_tree_against_the_runner_passes(launched: Harness) -> None:
    code, out, _ = cli(
        "validate", "--repo", str(launched.repo), "--now", NOW, "--against", launched.url + "/"
    )
    assert code == 0, out
    assert "error[" not in out


def test_json_findings_carry_no_commit(launched: Harness) -> None:
    edit(launched.repo, "welcome", 'subject: "Welcome', 'subject: "Hi')
    args = ["--repo", str(launched.repo), "--now", NOW, "--against", launched.url]
    code, out, _ = cli("validate", "--format", "json", *args)
    assert code == 1
    document = json.loads(out)
    rules = {(f["path"], f["rule"], f["commit"]) for f in document["findings"]}
    assert ("automations/welcome.yaml", "edit-not-allowed", None) in rules


def test_deleting_a_running_automation_is_refused(launched: Harness) -> None:
    (launched.repo / "automations" / "welcome.yaml").unlink()
    args = ["--repo", str(launched.repo), "--now", NOW, "--against", launched.url]
    code, out, _ = cli("validate", *args)
    assert code == 1
    assert "automations/welcome.yaml:1:1: error[delete-running]" in out


def test_an_invalid_file_keeps_the_applied_version(launched: Harness) -> None:
    (launched.repo / "automations" / "welcome.yaml").write_text("id: welcome\nstatus: [\n")
    args = ["--repo", str(launched.repo), "--now", NOW, "--against", launched.url]
    code, out, _ = cli("validate", *args)
    assert code == 1
    assert "delete-running" not in out  # invalid is a refused change, not a delete


def test_a_deleted_id_cannot_come_back(tmp_path: Path) -> None:
    write_repo(tmp_path, {"old": OLD, "launch": LAUNCH, "welcome": WELCOME})
    with Harness(tmp_path):
        pass
    (tmp_path / "automations" / "old.yaml").unlink()
    with Harness(tmp_path) as runner:  # the same store: the start-up apply deletes `old`
        state = runner.http.get("/v1/automations/old").json()
        assert state["effective_status"] == "deleted"
        with RunnerClient(runner.url) as client:
            deployed = fetch_deployed(client)
        assert deployed.retired == {"old"}
        assert set(deployed.versions) == {"launch", "welcome"}
        write_repo(tmp_path, {"old": OLD})
        code, out, _ = cli(
            "validate", "--repo", str(tmp_path), "--now", NOW, "--against", runner.url
        )
    assert code == 1
    assert "error[id-reused]" in out


def test_deployed_versions_equal_the_files(launched: Harness) -> None:
    with RunnerClient(launched.url) as client:
        deployed = fetch_deployed(client)
    assert set(deployed.versions) == {"launch", "welcome"}
    assert deployed.versions["launch"].path == "automations/launch.yaml"
    local = load_automation("automations/launch.yaml", LAUNCH.encode())
    assert deployed.versions["launch"].definition == Version.of(local, {}).definition


def test_api_key_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_repo(tmp_path, {"welcome": WELCOME})
    args = ["validate", "--repo", str(tmp_path), "--now", NOW]
    with Harness(tmp_path, environ=KEYS) as runner:
        monkeypatch.delenv("POSTWRIGHT_API_KEY", raising=False)
        with RunnerClient(runner.url) as client, pytest.raises(RunnerUnavailable, match="API_KEY"):
            fetch_deployed(client)
        assert main([*args, "--against", runner.url], io.StringIO()) == 2
        monkeypatch.setenv("POSTWRIGHT_API_KEY", "key-1")
        assert main([*args, "--against", runner.url], io.StringIO()) == 0


# --- plan --against ------------------------------------------------------------------


@pytest.fixture
def busy(tmp_path: Path) -> Iterator[Harness]:
    """Two running automations with two pending sends each: due in 2 h and in 3 days."""
    write_repo(tmp_path, {"reminder": REMINDER, "digest": DIGEST, "launch": LAUNCH})
    with Harness(tmp_path) as harness:
        for email in ("a@shop.test", "b@shop.test"):
            assert harness.post_event("signup", email).status_code == 202
        harness.drain()
        pending = harness.http.get("/v1/automations/digest/pending").json()["pending"]
        assert len(pending) == 2
        yield harness


def test_plan_shows_what_a_stop_and_a_pause_do_now(busy: Harness) -> None:
    edit(busy.repo, "reminder", "status: running", "status: paused")
    edit(busy.repo, "digest", "status: running", "status: stopped")
    args = ["plan", "--repo", str(busy.repo), "--now", NOW, "--against", busy.url]
    code, out, _ = cli(*args, "--format", "json")
    assert code == 0, out
    document = json.loads(out)
    assert document["against"] == busy.url
    entries = {e["id"]: e for e in document["automations"]}
    assert entries["digest"]["impact"] == {"cancels_now": 2}
    assert entries["digest"]["status"] == {"from": "running", "to": "stopped"}
    assert entries["reminder"]["impact"] == {"due_within_24h": 2}
    assert "launch" not in entries

    code, text, _ = cli(*args)
    assert code == 0
    assert f"plan {busy.url} -> working tree" in text
    assert "impact: cancels 2 pending sends now" in text
    assert "impact: 2 pending sends due within 24 h" in text

    code, markdown, _ = cli(*args, "--format", "markdown")
    assert code == 0
    assert f"From the runner at `{busy.url}` to the working tree." in markdown
    assert "| impact |" in markdown
    assert "cancels 2 pending sends now" in markdown


def test_a_pause_counts_only_sends_due_within_a_day(busy: Harness) -> None:
    edit(busy.repo, "digest", "status: running", "status: paused")
    args = ["plan", "--repo", str(busy.repo), "--now", NOW, "--against", busy.url]
    code, out, _ = cli(*args, "--format", "json")
    assert code == 0
    entries = {e["id"]: e for e in json.loads(out)["automations"]}
    assert entries["digest"]["impact"] == {"due_within_24h": 0}  # due in 3 days


def test_a_blocked_change_has_no_impact(busy: Harness) -> None:
    edit(busy.repo, "digest", "status: running", "status: draft")
    args = ["plan", "--repo", str(busy.repo), "--now", NOW, "--against", busy.url]
    code, out, _ = cli(*args, "--format", "json")
    assert code == 1
    entry = {e["id"]: e for e in json.loads(out)["automations"]}["digest"]
    assert entry["impact"] is None
    assert [note["rule"] for note in entry["blocked"]] == ["transition-not-allowed"]


def test_plan_without_against_has_no_impact_keys(busy: Harness) -> None:
    GitRepo(busy.repo).commit("deployed")
    code, out, _ = cli("plan", "--repo", str(busy.repo), "--now", NOW, "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert "against" not in document
    assert all("impact" not in entry for entry in document["automations"])


# --- errors: exit 2 naming the URL ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_unreachable_runner_exits_2_naming_the_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_repo(tmp_path, {"welcome": WELCOME})
    url = f"http://127.0.0.1:{free_port()}"
    for command in ("validate", "plan"):
        assert main([command, "--repo", str(tmp_path), "--against", url], io.StringIO()) == 2
        assert f"cannot reach {url}/v1/automations" in capsys.readouterr().err


def test_not_a_postwright_exits_2(launched: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    url = launched.url + "/healthz"  # answers, but not the API
    args = ["validate", "--repo", str(launched.repo), "--against", url]
    assert main(args, io.StringIO()) == 2
    assert f"{url}/v1/automations answered 404" in capsys.readouterr().err


def test_non_json_answer_is_named() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>"))
    with RunnerClient("http://runner.test", transport=transport) as client:
        with pytest.raises(RunnerUnavailable, match="not answer with JSON"):
            client.automations()


def test_against_needs_an_http_url_and_no_base(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not an http"):
        RunnerClient("runner.test:8080")
    write_repo(tmp_path, {"welcome": WELCOME})
    args = ["validate", "--repo", str(tmp_path), "--base", "HEAD", "--against", "http://x.test"]
    assert main(args, io.StringIO()) == 2


def test_a_runner_without_applied_state_is_named() -> None:
    with pytest.raises(RunnerUnavailable, match="older than this CLI"):
        applied_version("http://runner.test", "welcome", {"id": "welcome", "source": WELCOME})


# --- pure parts ----------------------------------------------------------------------


def test_children_keep_the_parent_of_an_invalid_file() -> None:
    parent = Version.of(load_automation("automations/welcome.yaml", WELCOME.encode()), {})
    broken = load_automation("automations/welcome.yaml", b"id: welcome\nstatus: [\n")
    tree = Tree(snapshot=None, loaded={"automations/welcome.yaml": broken})  # type: ignore[arg-type]
    assert children_of(tree, {"welcome": parent}) == {"welcome": parent}
    assert children_of(tree, {}) == {}


def test_impact_wording_and_json() -> None:
    assert Impact("cancels_now", 1).describe() == "cancels 1 pending send now"
    assert Impact("cancels_now", 1000, truncated=True).as_json() == {
        "cancels_now": 1000,
        "truncated": True,
    }
    assert Impact("due_within_24h", 3).as_json() == {"due_within_24h": 3}
    assert findings.make("edit-not-allowed", "a.yaml", "m").commit is None
