"""Git access for history walks: commits, trees and blobs, and nothing else.

Every call is one `git` subprocess with NUL-separated output where paths
appear; blob contents come through one long-lived `git cat-file --batch`
process, so a walk needs no clone and no checkout.
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO

from runner.core.layout import is_automation_path
from runner.errors import GitError, GitTimeout
from runner.repo.files import MAX_FILE_BYTES
from runner.repo.gitsnapshot import Entry, GitSnapshot
from runner.repo.snapshot import DirectorySnapshot

__all__ = [
    "CommitInfo",
    "Entry",
    "Git",
    "GitSnapshot",
    "run_git",
]

LOCAL_TIMEOUT = 600.0  # seconds: a local command on a huge repository, never a hung one

# Regular files and symlinks (followed inside the commit only); submodules (160000) and
# trees are never read.
_FILE_MODES = frozenset({b"100644", b"100755"})
_LINK_MODE = b"120000"
_CHECKOUT_HINT = "in GitHub Actions, give `actions/checkout` `fetch-depth: 0`"


@dataclass(frozen=True)
class CommitInfo:
    """One commit of a walk and its parents (first parent first)."""

    sha: str
    parents: tuple[str, ...]


class Git:
    """One repository, read through git plumbing; close it (or use `with`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._batch: subprocess.Popen[bytes] | None = None
        self._prefetched: dict[str, bytes | None] = {}
        self._closed = False
        self.oversized: set[str] = set()  # blobs over MAX_FILE_BYTES: skipped, never held
        # `root` may be a sub-folder of the work tree (a monorepo's `mail/`): commits name
        # paths from the top, so every path read is filtered to the prefix and cut to it.
        out = self._run("rev-parse", "--show-toplevel", "--show-prefix")
        top, prefix, *_ = out.decode("utf-8", "surrogateescape").split("\n")
        self.top, self.prefix = Path(top), prefix  # prefix: "" at the top, else "mail/"

    def __enter__(self) -> Git:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the `cat-file --batch` process."""
        self._closed = True
        batch, self._batch = self._batch, None
        self._prefetched.clear()
        if batch is not None:
            assert batch.stdin is not None and batch.stdout is not None
            batch.stdin.close()
            batch.stdout.close()
            batch.wait()

    def _run(self, *args: str, input: bytes | None = None, ok: Sequence[int] = (0,)) -> bytes:
        return _run(self.root, *args, input=input, ok=ok)

    def is_shallow(self) -> bool:
        """Whether this clone is shallow (history cut off)."""
        return self._run("rev-parse", "--is-shallow-repository").strip() == b"true"

    def missing(self, ref: str, what: str = "base commit") -> GitError:
        """The error for a ref absent from this clone, naming the fetch that fixes it."""
        name = ref[:7] if _is_sha(ref) else f"`{ref}`"
        remote_ref = ref.removeprefix("origin/")
        if self.is_shallow():
            fix = f"run `git fetch --unshallow` or `git fetch origin {remote_ref}`"
            return GitError(
                f"{what} {name} is not in this clone (shallow?): {fix}; {_CHECKOUT_HINT}"
            )
        fix = f"run `git fetch origin {remote_ref}`"
        return GitError(f"{what} {name} is not in this clone: {fix}; {_CHECKOUT_HINT}")

    def resolve(self, ref: str) -> str:
        """The full sha of `ref`; GitError naming the `git fetch` that fixes a missing one."""
        sha = self._verify(ref)
        if not sha:
            raise self.missing(ref)
        return sha

    def has_commit(self, ref: str) -> bool:
        """Whether `ref` names a commit present in this clone."""
        return bool(self._verify(ref))

    def _verify(self, ref: str) -> str:
        out = self._run(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", ok=(0, 1)
        )
        return out.decode().strip()

    def upstream(self) -> str | None:
        """The current branch's upstream (`origin/feature`), or None when none is configured."""
        out = self._run(
            "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}", ok=(0, 128)
        )
        name = out.decode("utf-8", "surrogateescape").strip()
        return name if name and self.has_commit(name) else None

    def remote_head(self, remote: str) -> str | None:
        """The branch `REMOTE/HEAD` points at (`origin/main`), or None when it is not set."""
        out = self._run(
            "symbolic-ref", "--quiet", "--short", f"refs/remotes/{remote}/HEAD", ok=(0, 1, 128)
        )
        return out.decode("utf-8", "surrogateescape").strip() or None

    def head(self) -> str | None:
        """The sha of HEAD, or None in a repository without commits."""
        return self._verify("HEAD") or None

    def commits(self, base: str, head: str) -> list[CommitInfo]:
        """`git rev-list --reverse --topo-order BASE..HEAD` with each commit's parents."""
        out = self._run("rev-list", "--reverse", "--topo-order", "--parents", f"{base}..{head}")
        found = [CommitInfo(line[0], tuple(line[1:])) for line in _words(out)]
        cut = self._shallow_commits().intersection(c.sha for c in found)
        if cut:
            raise self.missing(base, "the history from base commit")
        return found

    def subjects(self, shas: Sequence[str]) -> dict[str, str]:
        """The subject line of each commit, by sha (stats by revision show it)."""
        if not shas:
            return {}
        out = self._run("show", "--no-patch", "--format=%H%x09%s", *shas, "--")
        found: dict[str, str] = {}
        for line in out.decode("utf-8", "replace").splitlines():
            sha, tab, subject = line.partition("\t")
            if tab:
                found[sha] = subject
        return found

    def _shallow_commits(self) -> set[str]:
        path = Path(self._run("rev-parse", "--git-path", "shallow").decode().strip())
        path = path if path.is_absolute() else self.root / path
        try:
            return set(path.read_text().split())
        except FileNotFoundError:
            return set()

    def merge_base(self, a: str, b: str) -> str | None:
        """The best common ancestor of two commits, or None when they share no history."""
        out = self._run("merge-base", a, b, ok=(0, 1)).decode().strip()
        return out or None

    def is_ancestor(self, ancestor: str, head: str) -> bool:
        """Whether `ancestor` is in the history of `head` (False when it is gone, e.g. after
        a force-push and gc)."""
        try:
            return self.merge_base(ancestor, head) == ancestor
        except GitError:
            return False

    def snapshot(self, commit: str) -> GitSnapshot:
        """Every regular file of `commit` (`git ls-tree -r --full-tree`)."""
        out = self._run("ls-tree", "-r", "-z", "--full-tree", commit)
        blobs: dict[str, str] = {}
        links: dict[str, str] = {}
        for entry in out.split(b"\0"):
            if not entry:
                continue
            meta, _, path = entry.partition(b"\t")
            mode, _kind, blob = meta.split(b" ")
            name = self._inside(path.decode("utf-8", "surrogateescape"))
            if name is None:
                continue
            if mode in _FILE_MODES:
                blobs[name] = blob.decode()
            elif mode == _LINK_MODE:
                links[name] = blob.decode()
        return GitSnapshot(self, commit, blobs, links)

    def _inside(self, path: str) -> str | None:
        """`path` (from the top) relative to the root, or None when it lies outside it."""
        if not self.prefix:
            return path
        return path[len(self.prefix) :] if path.startswith(self.prefix) else None

    def changes(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, Entry | None]]:
        """For each (commit, parent): path -> new entry (None = gone), in one `diff-tree`."""
        if not pairs:
            return []
        lines = "".join(f"{commit} {parent}\n" for commit, parent in pairs).encode()
        out = self._run("diff-tree", "--stdin", "--always", "-r", "-z", "--no-renames", input=lines)
        result: list[dict[str, Entry | None]] = []
        tokens = iter(out.split(b"\0"))
        for token in tokens:
            token = token.strip(b"\n")
            if not token:
                continue
            if not token.startswith(b":"):
                result.append({})  # the header line of the next pair
                continue
            _old_mode, mode, _old, blob, _status = token[1:].split(b" ")
            path = self._inside(next(tokens).decode("utf-8", "surrogateescape"))
            if path is None:
                continue
            readable = mode in _FILE_MODES or mode == _LINK_MODE
            result[-1][path] = Entry(blob.decode(), mode == _LINK_MODE) if readable else None
        if len(result) != len(pairs):
            raise GitError(f"`git diff-tree` answered {len(result)} of {len(pairs)} diffs")
        return result

    def read_blob(self, blob: str) -> bytes | None:
        """A blob's bytes through the one `git cat-file --batch` process."""
        if blob in self._prefetched:
            return self._prefetched.pop(blob)  # the checker reads each blob once
        if self._closed:  # a snapshot kept after the walk: one process per read
            return self._run("cat-file", "blob", blob)
        batch = self._batch_process()
        assert batch.stdin is not None
        batch.stdin.write(blob.encode() + b"\n")
        batch.stdin.flush()
        return self._answer()

    def prefetch(self, blobs: Iterable[str]) -> None:
        """Ask for many blobs in one write, so a walk does not pay a round trip per file."""
        wanted = [b for b in dict.fromkeys(blobs) if b not in self._prefetched]
        if not wanted:
            return
        batch = self._batch_process()
        assert batch.stdin is not None
        request = b"".join(b.encode() + b"\n" for b in wanted)
        # A writer thread, because git stops reading requests while its answers are unread.
        writer = threading.Thread(target=_write_all, args=(batch.stdin, request))
        writer.start()
        try:
            for blob in wanted:
                self._prefetched[blob] = self._answer()
        finally:
            writer.join()

    def _batch_process(self) -> subprocess.Popen[bytes]:
        if self._batch is None:
            self._batch = subprocess.Popen(
                ["git", "-C", str(self.root), "cat-file", "--batch"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        return self._batch

    def _answer(self) -> bytes | None:
        assert self._batch is not None and self._batch.stdout is not None
        stream = self._batch.stdout
        header = stream.readline()
        if not header or header.endswith(b" missing\n"):
            return None
        blob, _kind, size_text = header.split(b" ")
        size = int(size_text)
        if size > MAX_FILE_BYTES:
            # Never held in memory: skipped in chunks, and refused by the snapshot.
            self.oversized.add(blob.decode())
            while size > 0:
                size -= len(stream.read(min(size, 1 << 20)))
            stream.read(1)
            return None
        content = stream.read(size)
        stream.read(1)  # the newline after each object
        return content

    def working_tree(self) -> DirectorySnapshot:
        """Tracked and untracked-not-ignored files as they are on disk (symlinks and special
        files included: reading them decides)."""
        # Run in the root: paths come relative to it, and only the files under it.
        out = self._run("ls-files", "-z", "--cached", "--others", "--exclude-standard")
        paths: set[str] = set()
        for raw in out.split(b"\0"):
            if not raw:
                continue
            path = raw.decode("utf-8", "surrogateescape")
            try:
                mode = os.lstat(self.root / path).st_mode
            except OSError:
                continue  # tracked but deleted on disk
            if not stat.S_ISDIR(mode):
                paths.add(path)
        return DirectorySnapshot(self.root, paths)

    def retired_ids(self, before: str) -> set[str]:
        """Ids of automation files deleted in the history of `before`, except ids present there."""
        out = self._run(
            "log",
            "--diff-filter=D",
            "--no-renames",
            "--name-only",
            "-z",
            "--format=",
            before,
            "--",
            "automations/",
        )
        inside = (self._inside(p) for p in _paths(out))
        deleted = {_stem(p) for p in inside if p is not None and is_automation_path(p)}
        present = {_stem(p) for p in self.snapshot(before).paths() if is_automation_path(p)}
        return deleted - present


# --- one-shot questions about a work tree -------------------------------------------------


def _run(
    root: Path,
    *args: str,
    input: bytes | None = None,
    ok: Sequence[int] = (0,),
    env: Mapping[str, str] | None = None,
    timeout: float = LOCAL_TIMEOUT,
) -> bytes:
    # Reading must never take the index lock a user's git may hold; never ask on a terminal.
    environ = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args],
            input=input,
            capture_output=True,
            check=False,
            env=environ,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise GitTimeout(f"`git {' '.join(args[:2])}` took longer than {timeout:g} s") from None
    except OSError as error:
        raise GitError(f"cannot run git: {error}") from error
    if done.returncode not in ok:
        message = done.stderr.decode("utf-8", "replace").strip()
        raise GitError(f"`git {' '.join(args[:2])}` failed: {message}")
    return done.stdout


def run_git(
    root: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = LOCAL_TIMEOUT
) -> bytes:
    """One git command in `root` (e.g. a fetch from a remote: runner.repo.git_remote builds
    it); GitTimeout past `timeout` seconds (the process is killed), GitError on failure."""
    return _run(root, *args, env=env, timeout=timeout)


def _paths(out: bytes) -> list[str]:
    # `git log -z --format=` separates commits with a newline before the next path.
    stripped = (p.lstrip(b"\n") for p in out.split(b"\0"))
    return [p.decode("utf-8", "surrogateescape") for p in stripped if p]


def _words(out: bytes) -> list[list[str]]:
    return [line.split() for line in out.decode().splitlines() if line.strip()]


def _stem(path: str) -> str:
    return PurePosixPath(path).stem


def _is_sha(ref: str) -> bool:
    return len(ref) >= 7 and all(c in "0123456789abcdef" for c in ref.lower())


def _write_all(stream: IO[bytes], data: bytes) -> None:
    stream.write(data)
    stream.flush()
