"""Hot reload and GitOps apply (SPEC 6): the repository on disk, applied safely and incrementally.

`Reloader.reload()` checks what changed and applies it against the *applied* state, one step per
commit when HEAD fast-forwarded, then the uncommitted working tree. Only ids whose files changed
(or whose last change was refused) are judged; nothing else is read or written.

What it records, for the API and metrics (read with `reload_state` and `reload_summary`):
- meta "reload_state:<id>": JSON {"desired_status" (the file's written status; "deleted" when the
  file is gone; None when it does not load), "path", "attempted_revision", "attempted_commit",
  "applied_revision", "applied_commit", "last_error" (None or {"rule", "message", "path",
  "line", "col", "help", "commit", "kind", "at", "findings": [...]}), "deletion_blocked",
  "updated_at"}. A revision is the git blob id of the file (hashed with its template texts when
  it has template files); "applied_revision" is the revision of the file version now live.
- meta "reload_error:<id>": the last refusal as before (cleared when a version is accepted).
- meta "reload_summary": JSON {"result", "at", "reason", "successful", "last_success_at",
  "applied", "refused", "counts" (reloads by result), "commit", "error"}.
- meta "applied_commit" (the HEAD applied) and "files_applied_at".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import posixpath
import subprocess
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from runner.checking.tree import Tree, TreeChecker
from runner.core.clock import Clock
from runner.core.desired import DesiredState
from runner.core.findings import Finding, Severity
from runner.core.layout import AUTOMATIONS_DIR, CONFIG_PATH, is_automation_path
from runner.core.lifecycle import Change
from runner.core.records import AppliedAutomation
from runner.core.settings import Settings
from runner.core.version import Version
from runner.engine.apply import (
    AppliedVersions,
    ApplyPlan,
    ApplyReport,
    execute,
    plan_files,
)
from runner.engine.catalog import DELETED
from runner.engine.worker import Worker
from runner.errors import GitError, PostwrightError
from runner.repo.files import Refused, is_present
from runner.repo.git import Git
from runner.repo.snapshot import DirectorySnapshot, Snapshot, git_blob_id, working_files
from runner.store.base import ReadTx, Store, WriteTx

log = logging.getLogger("postwright.reload")

FILES_APPLIED_META = "files_applied_at"
RELOAD_ERROR_META = "reload_error:"
RELOAD_STATE_META = "reload_state:"
RELOAD_SUMMARY_META = "reload_summary"
APPLIED_COMMIT_META = "applied_commit"
_STATUS_FLAGS = ("--untracked-files=all", "--no-renames")
RESULTS = ("applied", "partial", "failed", "refused_mass_delete")


# --- what a reload did ------------------------------------------------------------------


@dataclass
class ReloadResult:
    """One reload: (id, what, commit) per applied change, (id, findings, commit) per refusal."""

    result: str = "applied"  # one of RESULTS
    applied: list[tuple[str, str, str | None]] = field(default_factory=list)
    refused: list[tuple[str, tuple[Finding, ...], str | None]] = field(default_factory=list)
    at: datetime | None = None
    reason: str = "watch"
    commits: list[str | None] = field(default_factory=list)  # the steps applied, in order
    deletion_blocked: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def successful(self) -> bool:
        """Whether the files on disk are now what is live (nothing refused or failed)."""
        return self.result == "applied"

    @property
    def applied_count(self) -> int:
        """Applied changes."""
        return len(self.applied)

    @property
    def refused_count(self) -> int:
        """Refused changes."""
        return len(self.refused)


class MassDeleteRefused(PostwrightError):
    """A step would unload more than half of the applied automations (rolls the reload back)."""

    def __init__(self, deletes: list[str], live: int, commit: str | None) -> None:
        super().__init__(f"{len(deletes)} of {live} automations would be deleted at once")
        self.deletes, self.live, self.commit = deletes, live, commit


def is_mass_delete(deletes: int, live: int) -> bool:
    """More than half of the applied automations at once (and more than one)."""
    return deletes >= 2 and 2 * deletes > live


class Reloading(Protocol):
    """What the API and the watcher need of `Reloader`."""

    async def reload(
        self, changed: Collection[str] | None = None, *, reason: str = "watch"
    ) -> ReloadResult:
        """Apply what changed on disk (or everything when `changed` is None)."""
        ...


# --- reading the recorded state (for the API and metrics) -------------------------------


def reload_state(tx: ReadTx, automation_id: str) -> dict[str, Any] | None:
    """The recorded reload state of one automation (see the module docstring), or None."""
    raw = tx.meta(RELOAD_STATE_META + automation_id)
    if raw:
        state: dict[str, Any] = json.loads(raw)
        return state
    legacy = tx.meta(RELOAD_ERROR_META + automation_id)
    if not legacy:
        return None
    error = json.loads(legacy)
    first = (error.get("findings") or [{}])[0]
    return {
        "desired_status": error.get("desired_status"),
        "last_error": {**first, "at": error.get("at"), "kind": error.get("kind")},
        "deletion_blocked": error.get("kind") == "deleted",
    }


def reload_summary(tx: ReadTx) -> dict[str, Any]:
    """The last reload: result, time, successful flag, last success time and counts by result."""
    raw = tx.meta(RELOAD_SUMMARY_META)
    if raw:
        summary: dict[str, Any] = json.loads(raw)
        return summary
    return {
        "result": None,
        "at": None,
        "successful": None,
        "last_success_at": None,
        "applied": 0,
        "refused": 0,
        "counts": dict.fromkeys(RESULTS, 0),
    }


# --- start-up without a reloader (kept for runner.server.app.prepare) ----------------------


async def apply_repository(
    store: Store, tree: Tree, now: datetime, commit: str | None
) -> ApplyReport:
    """Apply the checked files as a whole state; every change's reload state is recorded."""

    def work(tx: WriteTx) -> ApplyReport:
        plan = plan_files(tx, tree, now, versions=AppliedVersions())
        report = execute(tx, plan, now, commit)
        record_states(tx, plan, report, commit, now)
        tx.set_meta(FILES_APPLIED_META, now.isoformat())
        return report

    return await store.write(work)


# --- the reloader -------------------------------------------------------------------------


@dataclass
class _Step:
    tree: Tree
    commit: str | None
    only: set[str] | None  # the judged ids; None: every id
    skip: frozenset[str] = frozenset()  # left to a later step (uncommitted files)


@dataclass
class _Plan:
    steps: list[_Step]
    head: str | None = None
    head_tree: Tree | None = None
    final: Tree | None = None
    dirty: frozenset[str] = frozenset()
    outcome: dict[str, bool] = field(default_factory=dict)  # judged id -> accepted (last step)


class Reloader:
    """Applies the repository on demand; one reload at a time, waiting calls coalesce."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        worker: Worker,
        clock: Clock,
        *,
        allow_mass_delete: bool = False,
    ) -> None:
        self.root = settings.repo
        self.store = store
        self.worker = worker
        self.clock = clock
        self.allow_mass_delete = allow_mass_delete
        self.reloads = 0  # reloads run (coalesced calls count once)
        self._lock = asyncio.Lock()
        self._checker = TreeChecker()
        self._versions: AppliedVersions | None = None
        self._head_tree: Tree | None = None
        self._final: Tree | None = None  # the last tree applied in full
        self._dirty: frozenset[str] = frozenset()
        self._unsettled: set[str] = set()  # ids whose last judged change was refused
        self._asked = 0
        self._served = 0
        self._pending: set[str] | None = set()
        self._last: ReloadResult | None = None

    async def reload(
        self, changed: Collection[str] | None = None, *, reason: str = "watch"
    ) -> ReloadResult:
        """Apply what changed (repository-relative paths; None: look at everything)."""
        self._asked += 1
        ticket = self._asked
        if changed is None or self._pending is None:
            self._pending = None
        else:
            self._pending.update(changed)
        async with self._lock:
            if self._served >= ticket and self._last is not None:
                return self._last  # a reload that started after this call covered it
            upto, paths = self._asked, self._pending
            self._pending = set()
            result = await self._reload(paths, reason)
            self._checker.retain(self._head_tree, self._final)
            self._served, self._last = upto, result
            return result

    async def _reload(self, changed: set[str] | None, reason: str) -> ReloadResult:
        now = self.clock.now()
        self.reloads += 1
        if self._versions is None:
            self._versions = AppliedVersions.of(await self.worker.catalog())
        applied_commit = await self.store.read(lambda tx: tx.meta(APPLIED_COMMIT_META))
        try:
            plan = await asyncio.to_thread(self._plan, changed, applied_commit, now)
            result = await self.store.write(lambda tx: self._apply(tx, plan, now, reason))
        except MassDeleteRefused as refused:
            result = ReloadResult("refused_mass_delete", at=now, reason=reason, error=str(refused))
            log.error("reload refused: %s (start with --allow-mass-delete to allow it)", refused)
            await self.store.write(lambda tx: _record_summary(tx, result, None))
            return result
        except Exception as error:
            log.exception("reload failed")
            result = ReloadResult("failed", at=now, reason=reason, error=str(error))
            await self.store.write(lambda tx: _record_summary(tx, result, None))
            return result
        self._remember(plan, result)
        _log(result)
        if result.applied:
            self.worker.wake()
        return result

    def _remember(self, plan: _Plan, result: ReloadResult) -> None:
        self._head_tree = plan.head_tree
        self._final = plan.final
        self._dirty = plan.dirty
        refused = {ident for ident, accepted in plan.outcome.items() if not accepted}
        self._unsettled = (self._unsettled - plan.outcome.keys()) | refused

    # planning: which trees, in which order, judging which ids (in a thread: git and disk)

    def _plan(self, changed: set[str] | None, applied_commit: str | None, now: datetime) -> _Plan:
        git = _open_git(self.root)
        if git is None:
            return self._plan_directory(changed, now)
        with git:
            head = git.head()
            if head is None:
                return self._plan_directory(changed, now)
            return self._plan_git(git, head, applied_commit, now)

    def _plan_directory(self, changed: set[str] | None, now: datetime) -> _Plan:
        previous = self._final if self._final is not None and self._head_tree is None else None
        if previous is None or changed is None:
            tree = self._checker.check(working_files(self.root), now)
        else:
            present = set(previous.snapshot.paths())
            for path in changed:
                if is_automation_path(path) or path == CONFIG_PATH:
                    if is_present(self.root, path):
                        present.add(path)
                    else:
                        present.discard(path)
            snapshot = DirectorySnapshot(self.root, present)
            tree = self._checker.check(snapshot, now, previous=previous, changed=changed)
        only = None if previous is None else _changed_ids(previous, tree) | self._unsettled
        return _Plan([_Step(tree, None, only)], final=tree)

    def _plan_git(self, git: Git, head: str, applied_commit: str | None, now: datetime) -> _Plan:
        steps: list[_Step] = []
        head_tree = self._head_tree
        if head_tree is not None and head_tree.snapshot.commit != head:
            head_tree = None
        direct = applied_commit != head
        if (
            applied_commit is not None
            and applied_commit != head
            and _is_ancestor(git, applied_commit, head)
        ):
            steps = self._commit_steps(git, applied_commit, head, now)
            head_tree, direct = steps[-1].tree if steps else head_tree, False
        if head_tree is None:
            snapshot = git.snapshot(head)
            git.prefetch(snapshot.blob_id(p) or "" for p in snapshot.paths() if _watched(p, ()))
            head_tree = self._checker.check(snapshot, now)
        uncommitted = _dirty_paths(self.root)
        known = (head_tree, self._final) if self._final is not None else (head_tree,)
        dirty = frozenset(p for p in uncommitted if _watched(p, known))
        final = head_tree
        dirty_ids: set[str] = set()
        if dirty:
            overlay = _Overlay(head_tree.snapshot, self.root, uncommitted)
            final = self._checker.check(overlay, now, previous=head_tree, changed=dirty)
            dirty_ids = _ids_at(dirty, (head_tree, final))
        if direct or self._final is None:
            steps.append(_Step(head_tree, head, None, frozenset(dirty_ids)))
        else:
            again = _ids_at(self._dirty - dirty, (head_tree,)) | self._unsettled
            steps.append(_Step(head_tree, head, again - dirty_ids))
        if dirty:
            steps.append(_Step(final, None, dirty_ids | (self._unsettled & dirty_ids)))
        return _Plan(steps, head, head_tree, final, dirty)

    def _commit_steps(self, git: Git, base: str, head: str, now: datetime) -> list[_Step]:
        commits = git.commits(base, head)
        pairs = [(c.sha, parent) for c in commits for parent in c.parents]
        diffs = iter(git.changes(pairs))
        steps: list[_Step] = []
        for commit in commits:
            tree = self._checker.check(git.snapshot(commit.sha), now)
            changed: set[str] | None = None
            for _ in commit.parents:  # a merge: what differs from every parent (2.2)
                paths = set(next(diffs))
                changed = paths if changed is None else changed & paths
            if changed is None:
                changed = set(tree.snapshot.paths())
            previous = steps[-1].tree if steps else None
            trees = (tree,) if previous is None else (tree, previous)
            steps.append(_Step(tree, commit.sha, _ids_at(changed, trees)))
        return steps

    # applying: every step in one transaction (a refused mass delete rolls all of it back)

    def _apply(self, tx: WriteTx, plan: _Plan, now: datetime, reason: str) -> ReloadResult:
        assert self._versions is not None
        result = ReloadResult(at=now, reason=reason)
        for step in plan.steps:
            only = step.only
            if only is None and step.skip:
                only = _all_ids(tx, step.tree) - step.skip
            if only is not None and not only:
                continue
            applied = plan_files(tx, step.tree, now, versions=self._versions, only=only)
            if not self.allow_mass_delete and is_mass_delete(
                len(applied.deletes), applied.live_count
            ):
                raise MassDeleteRefused(applied.deletes, applied.live_count, step.commit)
            report = execute(tx, applied, now, step.commit, self._versions)
            record_states(tx, applied, report, step.commit, now)
            plan.outcome.update(dict.fromkeys(report.accepted, True))
            plan.outcome.update((change.id, False) for change in report.refused)
            result.commits.append(step.commit)
            result.applied.extend((i, what, step.commit) for i, what in report.applied)
            for change in report.refused:
                result.refused.append((change.id, change.findings, step.commit))
        result.refused = [r for r in result.refused if plan.outcome.get(r[0]) is False]
        result.deletion_blocked = sorted(
            ident for ident, found, _ in result.refused if _blocks_delete(found)
        )
        result.result = "partial" if result.refused else "applied"
        if plan.head is not None:
            tx.set_meta(APPLIED_COMMIT_META, plan.head)
        tx.set_meta(FILES_APPLIED_META, now.isoformat())
        _record_summary(tx, result, plan.head)
        return result


# --- per-automation state -----------------------------------------------------------------


def record_states(
    tx: WriteTx, plan: ApplyPlan, report: ApplyReport, commit: str | None, now: datetime
) -> None:
    """Write the reload state of every judged id whose state changed (and the legacy error)."""
    refused = {change.id: change for change in report.refused}
    accepted = set(report.accepted)
    for change in plan.changes:
        if change.id not in refused and change.id not in accepted:
            continue
        raw = tx.meta(RELOAD_STATE_META + change.id)
        old = json.loads(raw) if raw else None
        state = _state(plan, change, refused.get(change.id), commit, old)
        if old is not None and _comparable(old) == _comparable(state):
            continue
        state["updated_at"] = now.isoformat()
        if state["last_error"] is not None:
            previous_error = (old or {}).get("last_error") or {}
            same = _comparable_error(previous_error) == _comparable_error(state["last_error"])
            state["last_error"]["at"] = previous_error.get("at") if same else now.isoformat()
        tx.set_meta(RELOAD_STATE_META + change.id, json.dumps(state))
        if change.id in refused:
            tx.set_meta(RELOAD_ERROR_META + change.id, json.dumps(_legacy(refused[change.id], now)))
        else:
            tx.delete_meta(RELOAD_ERROR_META + change.id)


def _state(
    plan: ApplyPlan,
    change: Change,
    refusal: Change | None,
    commit: str | None,
    old: Mapping[str, Any] | None,
) -> dict[str, Any]:
    tree = plan.tree
    path = change.new_path if change.kind != "deleted" else None
    if path is None and change.id in plan.invalid and plan.invalid[change.id]:
        path = plan.invalid[change.id][0].path
    attempted = _file_revision(tree, path, plan.children.get(change.id)) if path else None
    if change.kind == "deleted":
        desired: str | None = DELETED
    elif change.id in plan.invalid:
        desired = None
    else:
        desired = change.new_status.value if change.new_status is not None else None
    old = old or {}
    state: dict[str, Any] = {
        "desired_status": desired,
        "path": path,
        "attempted_revision": attempted,
        "attempted_commit": commit,
        "applied_revision": old.get("applied_revision"),
        "applied_commit": old.get("applied_commit"),
        "last_error": None,
        "deletion_blocked": False,
    }
    if refusal is None:
        state["applied_revision"], state["applied_commit"] = attempted, commit
    else:
        row = plan.rows.get(change.id)
        if state["applied_revision"] is None and row is not None:
            state["applied_revision"] = row_revision(row)
            state["applied_commit"] = row.commit
        state["last_error"] = _error(refusal, commit)
        state["deletion_blocked"] = _blocks_delete(refusal.findings)
    return state


def _error(change: Change, commit: str | None) -> dict[str, Any]:
    errors = [f for f in change.findings if f.severity is Severity.ERROR] or list(change.findings)
    found = [_finding(f, commit) for f in errors]
    first = found[0] if found else {"rule": None, "message": "refused"}
    return {**first, "kind": change.kind, "at": None, "findings": found}


def _finding(finding: Finding, commit: str | None) -> dict[str, Any]:
    return {
        "rule": finding.rule,
        "message": finding.message,
        "path": finding.path,
        "line": finding.line,
        "col": finding.col,
        "help": finding.help,
        "commit": finding.commit or commit,
    }


def _legacy(change: Change, now: datetime) -> dict[str, Any]:
    """The reload_error:<id> value as runner.server wrote it before reload states."""
    errors = [f for f in change.findings if f.severity is Severity.ERROR] or list(change.findings)
    return {
        "at": now.isoformat(),
        "kind": change.kind,
        "desired_status": change.new_status.value if change.new_status is not None else None,
        "findings": [_finding(f, None) for f in errors],
    }


def _comparable(state: Mapping[str, Any]) -> dict[str, Any]:
    plain = {k: v for k, v in state.items() if k != "updated_at"}
    if plain.get("last_error"):
        plain["last_error"] = _comparable_error(plain["last_error"])
    return plain


def _comparable_error(error: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in error.items() if k != "at"}


def _blocks_delete(found: Iterable[Finding]) -> bool:
    return any(f.rule == "delete-running" for f in found)


def revision(source: bytes, templates: Mapping[str, str]) -> str:
    """The revision of a file version: its blob id, hashed with its template texts if any."""
    blob = git_blob_id(source)
    if not templates:
        return blob
    parts = [blob, *(f"{k}={git_blob_id(v.encode())}" for k, v in sorted(templates.items()))]
    return hashlib.sha1("\n".join(parts).encode(), usedforsecurity=False).hexdigest()


def row_revision(row: AppliedAutomation) -> str:
    """The revision of the applied version of a row."""
    return revision(row.source.encode("utf-8"), row.templates)


def _file_revision(tree: DesiredState, path: str, version: Version | None) -> str | None:
    content = tree.read(path)
    if content is None:
        return None
    templates = version.templates if version is not None and version.path == path else {}
    return revision(content, templates)


def _record_summary(tx: WriteTx, result: ReloadResult, head: str | None) -> None:
    summary = reload_summary(tx)
    counts = {**dict.fromkeys(RESULTS, 0), **summary.get("counts", {})}
    counts[result.result] = counts.get(result.result, 0) + 1
    at = result.at.isoformat() if result.at is not None else None
    summary = {
        "result": result.result,
        "at": at,
        "reason": result.reason,
        "successful": result.successful,
        "last_success_at": at if result.successful else summary.get("last_success_at"),
        "applied": result.applied_count,
        "refused": result.refused_count,
        "deletion_blocked": result.deletion_blocked,
        "counts": counts,
        "commit": head,
        "error": result.error,
    }
    tx.set_meta(RELOAD_SUMMARY_META, json.dumps(summary))


def _log(result: ReloadResult) -> None:
    for ident, what, commit in result.applied:
        log.info("applied %s: %s%s", ident, what, f" ({commit[:7]})" if commit else "")
    for ident, found, commit in result.refused:
        for finding in found:
            if finding.severity is Severity.ERROR:
                log.warning(
                    "refused %s%s: %s:%d:%d %s: %s",
                    ident,
                    f" ({commit[:7]})" if commit else "",
                    finding.path,
                    finding.line,
                    finding.col,
                    finding.rule,
                    finding.message,
                )


# --- trees, ids and git -------------------------------------------------------------------


def _stem(path: str) -> str:
    return posixpath.basename(path).removesuffix(".yaml")


def _ids_at(paths: Iterable[str], trees: Iterable[Tree]) -> set[str]:
    """Automation ids read from `paths` (or from files using them as templates) in `trees`."""
    trees = tuple(trees)
    ids: set[str] = set()
    for path in paths:
        users = {path} if is_automation_path(path) else set()
        for tree in trees:
            users |= tree.template_users.get(path, set())
        for user in users:
            ids.add(_stem(user))
            for tree in trees:
                result = tree.files.get(user)
                if result is not None and result.loaded.model is not None:
                    ids.add(result.loaded.model.id)
    return ids


def _changed_ids(previous: Tree, tree: Tree) -> set[str]:
    """Ids whose file result differs between two trees of one checker (cached by content)."""
    paths = set()
    for path in previous.files.keys() | tree.files.keys():
        old, new = previous.files.get(path), tree.files.get(path)
        if (
            old is None
            or new is None
            or old.loaded is not new.loaded
            or old.version is not new.version
        ):
            paths.add(path)
    return _ids_at(paths, (previous, tree))


def _watched(path: str, trees: Iterable[Tree]) -> bool:
    """Whether an uncommitted path matters (not the database or other files in the checkout)."""
    if path.startswith(AUTOMATIONS_DIR) or path == CONFIG_PATH:
        return True
    return any(path in tree.template_users for tree in trees)


def _all_ids(tx: ReadTx, tree: Tree) -> set[str]:
    ids = {row.id for row in tx.automations() if row.status != DELETED}
    return ids | _ids_at(tree.files, (tree,))


def _open_git(root: Path) -> Git | None:
    """The repository's git, when `root` is the top of a work tree with commits."""
    if not (root / ".git").exists():
        return None
    try:
        return Git(root)
    except GitError:
        return None


def _is_ancestor(git: Git, ancestor: str, head: str) -> bool:
    try:
        return git.merge_base(ancestor, head) == ancestor
    except GitError:  # the applied commit is gone (gc after a force-push)
        return False


def _dirty_paths(root: Path) -> set[str]:
    """Paths whose file on disk differs from HEAD (`git status`, untracked files included)."""
    done = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain=v1", "-z", *_STATUS_FLAGS],
        capture_output=True,
        check=False,
        env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
    )
    if done.returncode != 0:
        raise GitError(f"`git status` failed: {done.stderr.decode('utf-8', 'replace').strip()}")
    entries = done.stdout.split(b"\0")
    return {e[3:].decode("utf-8", "surrogateescape") for e in entries if len(e) > 3}


class _Overlay:
    """A commit's files with the uncommitted ones read from disk."""

    commit: str | None = None

    def __init__(self, base: Snapshot, root: Path, dirty: Collection[str]) -> None:
        self._base = base
        self._dirty = frozenset(dirty)
        self._disk = DirectorySnapshot(root, self._dirty)

    def paths(self) -> Iterable[str]:
        """The commit's paths without removed files, and the new files."""
        kept = [p for p in self._base.paths() if p not in self._dirty]
        return kept + [p for p in self._dirty if is_present(self._disk.root, p)]

    def blob_id(self, path: str) -> str | None:
        """The content id on disk for uncommitted paths, else in the commit."""
        source = self._disk if path in self._dirty else self._base
        return source.blob_id(path)

    def read(self, path: str) -> bytes | None:
        """The bytes on disk for uncommitted paths, else in the commit."""
        source = self._disk if path in self._dirty else self._base
        return source.read(path)

    def refusal(self, path: str) -> Refused | None:
        """Why the file on disk or in the commit is not read, if it is refused."""
        source = self._disk if path in self._dirty else self._base
        return source.refusal(path)
