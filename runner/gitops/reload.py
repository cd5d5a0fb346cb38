"""Hot reload and GitOps apply: the repository on disk, applied safely and incrementally.

`Reloader.reload()` checks what changed and applies it against the *applied* state, one step per
commit when HEAD fast-forwarded, then the uncommitted working tree. Only ids whose files changed
(or whose last change was refused) are judged; nothing else is read or written. What it records
is written by reload_state.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from runner.checking.tree import Tree, TreeChecker
from runner.core.clock import Clock
from runner.core.findings import Severity
from runner.core.layout import CONFIG_PATH, is_automation_path
from runner.core.settings import Settings
from runner.engine.apply import (
    AppliedVersions,
    ApplyReport,
    execute,
    plan_files,
)
from runner.engine.worker import Worker
from runner.errors import PostwrightError
from runner.gitops.changes import all_ids, changed_ids, ids_at, watched
from runner.gitops.heap import release_free_memory
from runner.gitops.reload_state import (
    APPLIED_COMMIT_META,
    FILES_APPLIED_META,
    ReloadResult,
    blocks_delete,
    record_states,
    record_summary,
)
from runner.repo.files import is_present
from runner.repo.git import Git
from runner.repo.snapshot import DirectorySnapshot, OverlaySnapshot, working_files
from runner.repo.worktree import dirty_paths, open_repository
from runner.store.base import Store, WriteTx

log = logging.getLogger("postwright.reload")


class MassDeleteRefused(PostwrightError):
    """A step would unload more than half of the applied automations (rolls the reload back)."""

    def __init__(self, deletes: list[str], live: int, commit: str | None) -> None:
        super().__init__(f"{len(deletes)} of {live} automations would be deleted at once")
        self.deletes, self.live, self.commit = deletes, live, commit


class _Stale(Exception):
    """Another runner applied a commit after this reload was planned (nothing is written)."""


@dataclass(frozen=True)
class Expected:
    """A reload's condition: the applied commit is still `commit` when it plans and when it
    writes (checked under the lifecycle lock). Replicas following one remote pass what they read
    before fetching, so a replica whose fetch is older than another's apply never rolls it
    back; a failed condition is the result `stale` (nothing written: fetch and try again)."""

    commit: str | None


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
    subjects: dict[str, str] = field(default_factory=dict)  # sha -> subject line, of the steps


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
        self,
        changed: Collection[str] | None = None,
        *,
        reason: str = "watch",
        expect: Expected | None = None,
    ) -> ReloadResult:
        """Apply what changed (repository-relative paths; None: look at everything); with
        `expect`, only while the applied commit is the expected one (else result `stale`)."""
        self._asked += 1
        ticket = self._asked
        if changed is None or self._pending is None:
            self._pending = None
        else:
            self._pending.update(changed)
        async with self._lock:
            if self._served >= ticket and self._last is not None and expect is None:
                return self._last  # a reload that started after this call covered it
            upto, paths = self._asked, self._pending
            self._pending = set()
            result = await self._reload(paths, reason, expect)
            self._checker.retain(self._head_tree, self._final)
            self._served, self._last = upto, result
            # What the reload freed in C stays mapped otherwise (runner/gitops/heap.py);
            # the result is already committed, so this delays no reader.
            await asyncio.to_thread(release_free_memory)
            return result

    async def _reload(
        self, changed: set[str] | None, reason: str, expect: Expected | None
    ) -> ReloadResult:
        now = self.clock.now()
        self.reloads += 1
        if self._versions is None:
            self._versions = AppliedVersions.of(await self.worker.catalog())
        applied_commit = await self.store.read(lambda tx: tx.meta(APPLIED_COMMIT_META))
        try:
            if expect is not None and applied_commit != expect.commit:
                raise _Stale
            plan = await asyncio.to_thread(self._plan, changed, applied_commit, now)
            result = await self.store.write(lambda tx: self._apply(tx, plan, now, reason, expect))
        except _Stale:
            self.reloads -= 1
            return ReloadResult("stale", at=now, reason=reason)
        except MassDeleteRefused as refused:
            result = ReloadResult("refused_mass_delete", at=now, reason=reason, error=str(refused))
            log.error("reload refused: %s (start with --allow-mass-delete to allow it)", refused)
            await self.store.write(lambda tx: record_summary(tx, result, None))
            return result
        except Exception as error:
            log.exception("reload failed")
            result = ReloadResult("failed", at=now, reason=reason, error=str(error))
            await self.store.write(lambda tx: record_summary(tx, result, None))
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
        git = open_repository(self.root)
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
        only = None if previous is None else changed_ids(previous, tree) | self._unsettled
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
            and git.is_ancestor(applied_commit, head)
        ):
            steps = self._commit_steps(git, applied_commit, head, now)
            head_tree, direct = steps[-1].tree if steps else head_tree, False
        if head_tree is None:
            snapshot = git.snapshot(head)
            git.prefetch(snapshot.blob_id(p) or "" for p in snapshot.paths() if watched(p, ()))
            head_tree = self._checker.check(snapshot, now)
        uncommitted = dirty_paths(self.root)
        known = (head_tree, self._final) if self._final is not None else (head_tree,)
        dirty = frozenset(p for p in uncommitted if watched(p, known))
        final = head_tree
        dirty_ids: set[str] = set()
        if dirty:
            overlay = OverlaySnapshot(head_tree.snapshot, self.root, uncommitted)
            final = self._checker.check(overlay, now, previous=head_tree, changed=dirty)
            dirty_ids = ids_at(dirty, (head_tree, final))
        if direct or self._final is None:
            steps.append(_Step(head_tree, head, None, frozenset(dirty_ids)))
        else:
            again = ids_at(self._dirty - dirty, (head_tree,)) | self._unsettled
            steps.append(_Step(head_tree, head, again - dirty_ids))
        if dirty:
            steps.append(_Step(final, None, dirty_ids | (self._unsettled & dirty_ids)))
        # Read now, with git at hand: the dashboard shows them without running git.
        subjects = git.subjects([step.commit for step in steps if step.commit is not None])
        return _Plan(steps, head, head_tree, final, dirty, subjects=subjects)

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
            steps.append(_Step(tree, commit.sha, ids_at(changed, trees)))
        return steps

    # applying: every step in one transaction (a refused mass delete rolls all of it back)

    def _apply(
        self, tx: WriteTx, plan: _Plan, now: datetime, reason: str, expect: Expected | None
    ) -> ReloadResult:
        assert self._versions is not None
        if expect is not None:
            tx.lock_lifecycle()  # see what another replica committed, and hold it off
            if tx.meta(APPLIED_COMMIT_META) != expect.commit:
                raise _Stale
        result = ReloadResult(at=now, reason=reason)
        for step in plan.steps:
            only = step.only
            if only is None and step.skip:
                only = all_ids(tx, step.tree) - step.skip
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
            ident for ident, found, _ in result.refused if blocks_delete(found)
        )
        result.result = "partial" if result.refused else "applied"
        for sha, subject in plan.subjects.items():
            tx.record_commit(sha, subject)
        if plan.head is not None:
            tx.set_meta(APPLIED_COMMIT_META, plan.head)
        tx.set_meta(FILES_APPLIED_META, now.isoformat())
        record_summary(tx, result, plan.head)
        return result


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
