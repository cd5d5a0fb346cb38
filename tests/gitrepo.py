"""Real git repositories in a test's tmp_path, built one commit at a time."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# Keep the user's global and system git configuration (signing, hooks, templates) out.
_ENV = {
    **os.environ,
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


def run_git(cwd: Path, *args: str) -> str:
    """Run git in `cwd`; its stdout, stripped."""
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=_ENV, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip()


class GitRepo:
    """A repository with local user settings, on branch main."""

    def __init__(self, path: Path, *, init: bool = True) -> None:
        self.path = path
        if init:
            path.mkdir(parents=True, exist_ok=True)
            self.git("init", "-q", "-b", "main")
            self.git("config", "user.name", "Test")
            self.git("config", "user.email", "test@example.test")
            self.git("config", "commit.gpgsign", "false")

    def git(self, *args: str) -> str:
        """Run a git command in the repository."""
        return run_git(self.path, *args)

    def write(self, path: str, text: str) -> None:
        """Write a file (creating folders)."""
        target = self.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def remove(self, path: str) -> None:
        """Delete a file from the working tree."""
        (self.path / path).unlink()

    def move(self, source: str, target: str) -> None:
        """Move a file in the working tree."""
        (self.path / target).parent.mkdir(parents=True, exist_ok=True)
        (self.path / source).rename(self.path / target)

    def commit(self, message: str) -> str:
        """Stage everything and commit; the new commit's sha."""
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        """The sha of HEAD."""
        return self.git("rev-parse", "HEAD")

    def branch(self, name: str, start: str = "HEAD") -> None:
        """Create branch `name` at `start` and switch to it."""
        self.git("checkout", "-q", "-b", name, start)

    def checkout(self, name: str) -> None:
        """Switch to an existing branch."""
        self.git("checkout", "-q", name)

    def merge(self, name: str, message: str) -> str:
        """Merge `name` with a merge commit (--no-ff); the merge's sha."""
        self.git("merge", "-q", "--no-ff", "-m", message, name)
        return self.head()

    def merge_conflicting(self, name: str) -> None:
        """Start a merge expected to conflict, leaving the resolution to the test."""
        done = subprocess.run(
            ["git", "merge", "-q", "--no-ff", name],
            cwd=self.path,
            env=_ENV,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0:
            raise AssertionError("the merge did not conflict")

    def squash(self, name: str, message: str) -> str:
        """Squash `name` onto the current branch as one commit; its sha."""
        self.git("merge", "-q", "--squash", name)
        return self.commit(message)

    def shallow_clone(self, target: Path, branch: str = "main") -> GitRepo:
        """`git clone --depth 1` of this repository into `target`."""
        run_git(
            self.path.parent,
            "clone",
            "-q",
            "--depth",
            "1",
            "--branch",
            branch,
            f"file://{self.path}",
            str(target),
        )
        return GitRepo(target, init=False)


def automation(
    ident: str,
    status: str = "running",
    subject: str = "Hello",
    *,
    extra: str = "",
    trigger: str = "{type: event, event: purchase}",
) -> str:
    """The text of a small valid automation file; `extra` adds top-level lines."""
    return (
        f"id: {ident}\n"
        f"status: {status}\n"
        f"{extra}"
        f"trigger: {trigger}\n"
        "email:\n"
        '  from: "Shop <news@shop.example>"\n'
        f"  subject: {subject}\n"
        "  html: <p>Hi</p>\n"
    )
