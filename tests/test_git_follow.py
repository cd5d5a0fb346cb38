"""`serve --git` end to end: real `postwright serve` processes following a bare repository
served by `git daemon` or by `git http-backend` behind basic auth, on 127.0.0.1.

Intervals are short (1 s) where the interval is what is tested, and an hour where a webhook
must be what made the fetch. Every wait is bounded; every server stops with its `with` block.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.gitops.git_webhook import github_signature
from tests.fakes.git_servers import GitHttp, bare_repository, git_daemon
from tests.gitfollow import Upstream, automation, run_once, serve_command, serve_git
from tests.pg import free_port
from tests.serving import metric, wait_for

SECRET = "hook-secret-for-tests"
TOKEN = "tok-9f3b1c7e5a-never-shown"
APPLY_WAIT = 15.0  # seconds from a push to the change being applied (about 1-2 s needed)
NEVER = "1h"  # an interval that cannot be what applied a change during a test


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    """A bare repository under tmp_path/remotes with `hello` running on main."""
    bare = bare_repository(tmp_path / "remotes")
    clone = Upstream(tmp_path / "upstream", bare)
    clone.save("hello", automation("hello"), "hello")
    clone.push()
    return clone


def test_pushed_commits_are_applied_one_by_one_within_the_interval(
    tmp_path: Path, upstream: Upstream
) -> None:
    with git_daemon(tmp_path / "remotes") as base:
        with serve_git(f"{base}/automations.git", tmp_path / "data", "--interval", "1s") as run:
            assert run.subject("hello") == "Hello"
            # Two commits in one push: a running automation's subject may change only after a
            # commit that paused it, so applying the head alone would be refused.
            paused = upstream.save("hello", automation("hello", "paused"), "pause")
            edited = upstream.save("hello", automation("hello", "paused", "Edited"), "edit")
            upstream.push()
            wait_for(lambda: run.subject("hello") == "Edited", "edit applied", APPLY_WAIT)
            detail = run.automation("hello")
            assert detail is not None and detail["last_error"] is None
            steps = {(entry["kind"], entry["commit"]) for entry in detail["history"]}
            assert ("status", paused) in steps and ("definition", edited) in steps, steps
            state = run.git_state()
            assert state["applied_commit"] == edited and state["last_fetch_ok"] is True
            assert run.http.get("/readyz").status_code == 200
        # The remote URL kept in the checkout has no credentials (there are none here either).
        config = (tmp_path / "data" / ".postwright" / "git" / ".git" / "config").read_text()
        assert f"{base}/automations.git" in config


def test_a_signed_webhook_fetches_at_once_and_forgeries_are_refused(
    tmp_path: Path, upstream: Upstream
) -> None:
    environ = {"POSTWRIGHT_GIT_WEBHOOK_SECRET": SECRET}
    with git_daemon(tmp_path / "remotes") as base:
        url = f"{base}/automations.git"
        with serve_git(url, tmp_path / "data", "--interval", NEVER, environ=environ) as run:
            head = upstream.save("other", automation("other"), "other")
            upstream.push()
            push = json.dumps({"ref": "refs/heads/main", "after": head}).encode()
            headers = {"Content-Type": "application/json", "X-GitHub-Event": "push"}
            forged = {**headers, "X-Hub-Signature-256": github_signature("wrong", push)}
            answer = run.http.post("/v1/git/webhook", content=push, headers=forged)
            assert answer.status_code == 401, answer.text
            answer = run.http.post("/v1/git/webhook", content=push, headers=headers)
            assert answer.status_code == 401 and "unsigned" in answer.json()["message"]
            gitlab = {"Content-Type": "application/json", "X-Gitlab-Event": "Push Hook"}
            answer = run.http.post(
                "/v1/git/webhook", content=push, headers={**gitlab, "X-Gitlab-Token": "nope"}
            )
            assert answer.status_code == 401
            assert run.automation("other") is None  # nothing fetched: the interval is an hour
            assert "/v1/git/webhook" in run.get("/openapi.json")["paths"]

            elsewhere = json.dumps({"ref": "refs/heads/feature"}).encode()
            signed = {**headers, "X-Hub-Signature-256": github_signature(SECRET, elsewhere)}
            answer = run.http.post("/v1/git/webhook", content=elsewhere, headers=signed)
            assert answer.status_code == 202 and answer.json()["status"] == "ignored"
            assert "refs/heads/feature" in answer.json()["reason"]

            signed = {**headers, "X-Hub-Signature-256": github_signature(SECRET, push)}
            answer = run.http.post("/v1/git/webhook", content=push, headers=signed)
            assert answer.status_code == 202 and answer.json()["status"] == "fetch_queued"
            wait_for(lambda: run.automation("other"), "webhook push applied", APPLY_WAIT)

            third = upstream.save("third", automation("third"), "third")
            upstream.push()
            token = {**gitlab, "X-Gitlab-Token": SECRET}
            assert run.http.post("/v1/git/webhook", content=push, headers=token).status_code == 202
            wait_for(lambda: run.applied(third), "GitLab push applied", APPLY_WAIT)
            # POST /v1/reload of a following runner fetches first, then applies.
            fourth = upstream.save("fourth", automation("fourth"), "fourth")
            upstream.push()
            answer = run.http.post("/v1/reload", json={})
            assert answer.status_code == 200 and answer.json()["result"] == "applied"
            assert [a["id"] for a in answer.json()["applied"]] == ["fourth"]
            assert run.applied(fourth)
            text = run.http.get("/metrics").text
            assert metric(text, 'postwright_git_webhooks_total{result="refused"}') == 3
            assert metric(text, 'postwright_git_webhooks_total{result="accepted"}') == 2
            assert metric(text, 'postwright_git_webhooks_total{result="ignored"}') == 1


def test_a_force_push_is_applied_as_a_jump(tmp_path: Path, upstream: Upstream) -> None:
    start = upstream.head()
    with git_daemon(tmp_path / "remotes") as base:
        with serve_git(f"{base}/automations.git", tmp_path / "data", "--interval", "1s") as run:
            dropped = upstream.save("dropped", automation("dropped", "draft"), "soon rewritten")
            upstream.push()
            wait_for(lambda: run.applied(dropped), "first push applied", APPLY_WAIT)
            upstream.git("reset", "-q", "--hard", start)
            forced = upstream.save("kept", automation("kept"), "rewritten history")
            upstream.push(force=True)
            wait_for(lambda: run.applied(forced), "force-push applied", APPLY_WAIT)
            assert run.automation("kept") is not None
            gone = run.automation("dropped")
            assert gone is not None and gone["effective_status"] == "deleted"
            assert f"applied {forced[:7]} as a jump from {dropped[:7]}" in run.output()
            text = run.http.get("/metrics").text
            assert metric(text, "postwright_git_jumps_total") == 1


def test_wrong_credentials_and_a_lost_remote_keep_the_applied_state_and_say_why(
    tmp_path: Path, upstream: Upstream
) -> None:
    environ = {"POSTWRIGHT_GIT_TOKEN": TOKEN}
    with GitHttp(tmp_path / "remotes", "x-access-token", TOKEN) as remote:
        url = f"{remote.url}/automations.git"
        with serve_git(url, tmp_path / "data", "--interval", "1s", environ=environ) as run:
            assert run.subject("hello") == "Hello"
            remote.password = "rotated-elsewhere"  # the runner's token no longer works
            upstream.save("late", automation("late"), "late")
            upstream.push()
            state, _ = wait_for(
                lambda: (s := run.git_state())["error_reason"] == "auth" and s,
                "auth failure shown",
                APPLY_WAIT,
            )
            assert state["last_fetch_ok"] is False and state["applied_commit"] is not None
            ready = run.http.get("/readyz")
            assert ready.status_code == 200 and run.subject("hello") == "Hello"
            assert run.automation("late") is None
            answer = run.http.post("/v1/reload", json={})
            assert answer.status_code == 200 and answer.json()["result"] == "failed"
            text = run.http.get("/metrics").text
            assert (metric(text, 'postwright_git_fetch_errors_total{reason="auth"}') or 0) >= 1
            assert metric(text, "postwright_git_last_fetch_successful") == 0
            for shown in (ready.text, text, run.output()):
                assert TOKEN not in shown
            remote.__exit__(None, None, None)  # the remote goes away
            wait_for(
                lambda: run.git_state()["error_reason"] == "unreachable",
                "unreachable shown",
                APPLY_WAIT,
            )
            assert run.http.get("/readyz").status_code == 200
            assert run.subject("hello") == "Hello"
            assert TOKEN not in run.output()
        config = (tmp_path / "data" / ".postwright" / "git" / ".git" / "config").read_text()
        assert TOKEN not in config


def test_a_first_clone_with_a_wrong_token_exits_2_naming_the_reason(
    tmp_path: Path, upstream: Upstream
) -> None:
    with GitHttp(tmp_path / "remotes", "x-access-token", "the-right-one") as remote:
        command = serve_command(
            f"{remote.url}/automations.git", tmp_path / "data", free_port(), "--interval", "1s"
        )
        code, output = run_once(command, {"POSTWRIGHT_GIT_TOKEN": TOKEN}, timeout=60)
    assert code == 2, output
    assert "(auth)" in output and TOKEN not in output


def test_credentials_in_the_url_are_refused_without_showing_them(tmp_path: Path) -> None:
    url = f"https://someone:{TOKEN}@git.example.test/shop/automations.git"
    code, output = run_once(serve_command(url, tmp_path / "data", free_port()), {}, timeout=60)
    assert code == 2, output
    assert "POSTWRIGHT_GIT_TOKEN" in output and TOKEN not in output


def test_bad_flags_exit_2_before_any_clone(tmp_path: Path, upstream: Upstream) -> None:
    bare = str(tmp_path / "remotes" / "automations.git")
    checks = [
        (["--repo", str(tmp_path)], "--repo and --git exclude each other"),
        (["--interval", "soon"], "--interval 'soon'"),
        (["--ref=-x"], "is not a branch name"),
    ]
    for flags, message in checks:
        command = serve_command(bare, tmp_path / "data", free_port(), *flags)
        code, output = run_once(command, {}, timeout=60)
        assert code == 2 and message in output, output
    assert not (tmp_path / "data" / ".postwright" / "git" / ".git").exists()


def test_a_restart_with_the_remote_down_serves_the_applied_state(
    tmp_path: Path, upstream: Upstream
) -> None:
    port = free_port()
    with git_daemon(tmp_path / "remotes", port) as base:
        url = f"{base}/automations.git"
        with serve_git(url, tmp_path / "data", "--interval", "1s") as run:
            head = upstream.head()
            assert run.applied(head)
    # The daemon is gone: the restart cannot fetch, and serves what it applied before.
    with serve_git(url, tmp_path / "data", "--interval", "1s") as run:
        assert run.subject("hello") == "Hello"
        state = run.git_state()
        assert state["error_reason"] == "unreachable" and state["applied_commit"] == head
        assert "applying the checkout of the last run" in run.output()


def test_commit_links_come_from_a_github_remote_without_a_setting(
    tmp_path: Path, upstream: Upstream
) -> None:
    # The remote is named by its GitHub address as an operator would; git's `insteadOf`
    # (given through the environment) fetches it from the local daemon instead.
    forge = "https://github.com/acme/mail.git"
    with git_daemon(tmp_path / "remotes") as base:
        environ = {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": f"url.{base}/automations.git.insteadOf",
            "GIT_CONFIG_VALUE_0": forge,
        }
        with serve_git(forge, tmp_path / "data", "--interval", NEVER, environ=environ) as run:
            head = upstream.head()
            assert run.applied(head)
            page = run.http.get("/ui").text
    assert f'href="https://github.com/acme/mail/commit/{head}"' in page, page[-2000:]
