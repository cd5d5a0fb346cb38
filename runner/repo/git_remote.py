"""Following a remote repository: clone, fetch one branch, move the checkout (docs/git-follow.md).

Every command runs through runner.repo.git (one place starts git) with a time limit and
without a terminal. Credentials come from the environment and reach git only through the
child's environment: an HTTPS token through a credential helper that reads a variable (never
in the remote URL kept in .git/config, never on a command line), an SSH key and its
known_hosts through GIT_SSH_COMMAND with strict host key checking. Every message that may
leave the process goes through `redact`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from runner.errors import GitError, GitTimeout, UsageError
from runner.repo.git import run_git

FOLLOWED_REF = "refs/postwright/followed"  # the fetched tip of the followed branch
REASONS = ("auth", "host_key", "not_found", "unreachable", "timeout", "error")

_TOKEN_VARIABLE = "POSTWRIGHT_GIT_HELPER_TOKEN"  # the child's copy: the helper prints it
_USER_VARIABLE = "POSTWRIGHT_GIT_HELPER_USERNAME"
# A shell function git runs as its credential helper: it answers `get` from the variables.
_HELPER = (
    '!f() { if test "$1" = get; then printf "username=%s\\npassword=%s\\n" '
    f'"${_USER_VARIABLE}" "${_TOKEN_VARIABLE}"; fi; }}; f'
)
_REF = re.compile(r"[A-Za-z0-9._/-]+")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")
# (reason, lower-case fragments of git's message), first match wins: order matters.
_CLASSES = (
    ("not_found", ("repository not exported", "couldn't find remote ref", "not found")),
    ("not_found", ("does not appear to be a git repository", "returned error: 404")),
    ("host_key", ("host key verification failed", "no matching host key")),
    ("auth", ("authentication failed", "could not read username", "could not read password")),
    ("auth", ("permission denied", "returned error: 401", "returned error: 403")),
    ("auth", ("invalid username or password", "access denied")),
    ("unreachable", ("could not resolve", "connection refused", "failed to connect")),
    ("unreachable", ("unable to connect", "network is unreachable", "no route to host")),
    ("unreachable", ("connection timed out", "connection reset", "unable to access")),
)


@dataclass(frozen=True)
class Credentials:
    """How to authenticate to the remote: an HTTPS token, or an SSH key and known_hosts."""

    token: str | None = None
    username: str = "x-access-token"
    ssh_key: Path | None = None
    known_hosts: Path | None = None

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in any output."""
        return (self.token,) if self.token else ()


@dataclass(frozen=True)
class Remote:
    """The followed branch of one remote repository."""

    url: str
    ref: str = "main"
    credentials: Credentials = Credentials()
    timeout: float = 60.0  # seconds for one fetch (the process is stopped past it)

    @property
    def branch_ref(self) -> str:
        """The full name of the followed branch on the remote."""
        return self.ref if self.ref.startswith("refs/") else f"refs/heads/{self.ref}"


class FetchError(GitError):
    """A clone or fetch failed; `reason` is one of REASONS and the message is redacted."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without URL user information and without any of `secrets`."""
    text = _USERINFO.sub(r"\1***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def check_url(url: str) -> str:
    """The URL to follow; a password or token inside it is refused (it would be stored in
    .git/config and shown in errors): the token belongs in the environment."""
    if "://" in url:
        parts = urlsplit(url)
        if parts.password is not None or (parts.scheme.startswith("http") and parts.username):
            raise UsageError(
                f"--git {redact(url)}: put no credentials in the URL; give the token in the "
                "environment (POSTWRIGHT_GIT_TOKEN, docs/git-follow.md)"
            )
    elif not url.strip() or url.startswith("-"):
        raise UsageError("--git needs the URL of the repository to follow")
    return url


def check_ref(ref: str) -> str:
    """A branch name to follow (letters, digits, `._/-`, not starting with `-`)."""
    if not _REF.fullmatch(ref) or ref.startswith("-") or ".." in ref:
        raise UsageError(f"--ref {ref!r} is not a branch name")
    return ref


def classify(error: GitError) -> str:
    """The reason of a failed fetch: auth, host_key, not_found, unreachable, timeout, error."""
    if isinstance(error, GitTimeout):
        return "timeout"
    text = str(error).lower()
    for reason, fragments in _CLASSES:
        if any(fragment in text for fragment in fragments):
            return reason
    return "error"


def fetch(remote: Remote, checkout: Path) -> str:
    """Clone into `checkout` (an empty or missing folder) or fetch into it; the sha of the
    remote branch. A force-pushed branch is taken as it is now (a forced refspec)."""
    checkout.mkdir(parents=True, exist_ok=True)
    try:
        if not (checkout / ".git").exists():
            run_git(checkout, "init", "-q")
            run_git(checkout, "remote", "add", "origin", remote.url)
        else:  # the URL may have changed since the last start
            run_git(checkout, "remote", "set-url", "origin", remote.url)
        spec = f"+{remote.branch_ref}:{FOLLOWED_REF}"
        run_git(
            checkout,
            *auth_options(remote.credentials),
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-recurse-submodules",
            "--no-write-fetch-head",
            "origin",
            spec,
            env=environment(remote.credentials),
            timeout=remote.timeout,
        )
        out = run_git(checkout, "rev-parse", "--verify", f"{FOLLOWED_REF}^{{commit}}")
    except GitError as error:
        reason = classify(error)
        detail = str(error).split("failed: ", 1)[-1]  # git's own words, not our command line
        message = f"fetching {remote.ref} of {remote.url} failed ({reason}): {detail}"
        raise FetchError(reason, redact(message, remote.credentials.secrets())) from None
    return out.decode().strip()


def checkout_commit(checkout: Path, sha: str) -> None:
    """Move the work tree to `sha` (detached; files the runner does not own are overwritten)."""
    run_git(
        checkout, "-c", "advice.detachedHead=false", "checkout", "-q", "--force", "--detach", sha
    )


def auth_options(credentials: Credentials) -> tuple[str, ...]:
    """The `-c` options of a fetch: no helper of the user's, ours when there is a token."""
    # The empty value drops every helper of the user's configuration first.
    options = ["-c", "credential.helper=", "-c", "core.askPass="]
    if credentials.token:
        options += ["-c", f"credential.helper={_HELPER}"]
    return tuple(options)


def environment(credentials: Credentials) -> dict[str, str]:
    """What a fetch's `git` process gets in its environment: the token for the credential
    helper, or the SSH command with the key and strict host key checking."""
    environ = {"GIT_ASKPASS": "", "SSH_ASKPASS": ""}
    if credentials.token:
        environ[_TOKEN_VARIABLE] = credentials.token
        environ[_USER_VARIABLE] = credentials.username
    if credentials.ssh_key is not None:
        command = ["ssh", "-i", str(credentials.ssh_key), "-o", "IdentitiesOnly=yes"]
        if credentials.known_hosts is not None:
            command += ["-o", f"UserKnownHostsFile={credentials.known_hosts}"]
        command += ["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"]
        environ["GIT_SSH_COMMAND"] = shlex.join(command)
    return environ
