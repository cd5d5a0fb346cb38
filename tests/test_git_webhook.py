"""The pure parts of `serve --git`: webhook signatures and refs, redaction of credentials, the
reasons of failed fetches, and the URL check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.errors import GitError, GitTimeout, UsageError
from runner.gitops.git_webhook import (
    WebhookRefused,
    delivery,
    github_signature,
    verify,
)
from runner.repo.git_remote import (
    Credentials,
    Remote,
    auth_options,
    check_ref,
    check_url,
    classify,
    environment,
    redact,
)

SECRET = "s3cret"
BODY = json.dumps({"ref": "refs/heads/main"}).encode()


def test_github_signature_is_checked_over_the_exact_body() -> None:
    headers = {"x-hub-signature-256": github_signature(SECRET, BODY)}
    assert verify(headers, BODY, SECRET) == "github"
    with pytest.raises(WebhookRefused, match="does not match"):
        verify(headers, BODY + b" ", SECRET)
    with pytest.raises(WebhookRefused):
        verify({"x-hub-signature-256": github_signature("other", BODY)}, BODY, SECRET)
    with pytest.raises(WebhookRefused):
        verify({"x-hub-signature-256": "sha1=abc"}, BODY, SECRET)


def test_gitlab_token_unsigned_and_unconfigured_requests() -> None:
    assert verify({"x-gitlab-token": SECRET}, BODY, SECRET) == "gitlab"
    with pytest.raises(WebhookRefused, match="wrong"):
        verify({"x-gitlab-token": "s3crex"}, BODY, SECRET)
    with pytest.raises(WebhookRefused, match="unsigned"):
        verify({}, BODY, SECRET)
    with pytest.raises(WebhookRefused, match="no webhook secret"):
        verify({"x-gitlab-token": ""}, BODY, None)


def test_only_pushes_to_the_followed_branch_trigger_a_fetch() -> None:
    push = delivery("github", {"x-github-event": "push"}, BODY)
    assert push.concerns("refs/heads/main") is None
    assert "refs/heads/release" in (push.concerns("refs/heads/release") or "")
    ping = delivery("github", {"x-github-event": "ping"}, b"not even json")
    assert "not a push" in (ping.concerns("refs/heads/main") or "")
    hook = delivery("gitlab", {"x-gitlab-event": "Push Hook"}, BODY)
    assert hook.concerns("refs/heads/main") is None
    tag = delivery("gitlab", {"x-gitlab-event": "Tag Push Hook"}, BODY)
    assert tag.concerns("refs/heads/main") is not None
    with pytest.raises(ValueError):
        delivery("github", {"x-github-event": "push"}, b"[1]")


def test_redact_removes_userinfo_and_secrets() -> None:
    text = "fatal: unable to access 'https://bot:tok123@git.example/r.git/': tok123 refused"
    shown = redact(text, ["tok123"])
    assert "tok123" not in shown and "bot" not in shown
    assert "https://***@git.example/r.git/" in shown
    assert redact("ssh://git@host/r.git") == "ssh://***@host/r.git"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("fatal: Authentication failed for 'http://127.0.0.1/r.git/'", "auth"),
        ("fatal: could not read Username for 'https://h': terminal prompts disabled", "auth"),
        ("git@h: Permission denied (publickey).", "auth"),
        ("Host key verification failed.", "host_key"),
        ("fatal: remote error: access denied or repository not exported: /x.git", "not_found"),
        ("fatal: couldn't find remote ref refs/heads/main", "not_found"),
        ("fatal: unable to connect to 127.0.0.1:\n127.0.0.1: Connection refused", "unreachable"),
        ("fatal: unable to access 'https://h/': Could not resolve host: h", "unreachable"),
        ("fatal: something else entirely", "error"),
    ],
)
def test_failed_fetches_are_classified(message: str, reason: str) -> None:
    assert classify(GitError(message)) == reason


def test_a_timeout_is_its_own_reason() -> None:
    assert classify(GitTimeout("`git fetch` took longer than 60 s")) == "timeout"


def test_urls_with_credentials_are_refused_without_echoing_them() -> None:
    with pytest.raises(UsageError) as refused:
        check_url("https://bot:tok123@git.example/r.git")
    assert "tok123" not in str(refused.value)
    with pytest.raises(UsageError):
        check_url("https://tok123@git.example/r.git")  # a bare token as the user name
    assert check_url("ssh://git@git.example/r.git") == "ssh://git@git.example/r.git"
    assert check_url("git@git.example:shop/r.git") == "git@git.example:shop/r.git"
    with pytest.raises(UsageError):
        check_url("--upload-pack=touch /tmp/x")
    assert check_ref("release/2026.12") == "release/2026.12"
    for bad in ("-x", "a..b", "main branch", ""):
        with pytest.raises(UsageError):
            check_ref(bad)


def test_the_followed_ref_and_the_secrets_of_a_remote() -> None:
    remote = Remote("https://h/r.git", "release", Credentials(token="t0k"))
    assert remote.branch_ref == "refs/heads/release"
    assert Remote("u", "refs/heads/x").branch_ref == "refs/heads/x"
    assert remote.credentials.secrets() == ("t0k",)
    assert Credentials(ssh_key=Path("/k")).secrets() == ()


def test_the_token_never_reaches_a_command_line_and_ssh_checks_host_keys() -> None:
    token = Credentials(token="t0k-secret", username="bot")
    assert not any("t0k-secret" in option for option in auth_options(token))
    assert "credential.helper=" in auth_options(token)  # the user's helpers are dropped
    assert environment(token)["POSTWRIGHT_GIT_HELPER_TOKEN"] == "t0k-secret"
    keyed = Credentials(ssh_key=Path("/keys/id"), known_hosts=Path("/keys/known hosts"))
    command = environment(keyed)["GIT_SSH_COMMAND"]
    assert "-i /keys/id" in command and "StrictHostKeyChecking=yes" in command
    assert "'UserKnownHostsFile=/keys/known hosts'" in command and "BatchMode=yes" in command
    assert "POSTWRIGHT_GIT_HELPER_TOKEN" not in environment(keyed)
