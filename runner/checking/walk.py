"""The history walk of `validate --base`: every commit since a base, then the working tree.

Each commit is checked against its parent the way the runner would apply it:
one `TreeChecker` (cached per blob) checks every snapshot, and each step is judged
by `judge_step`, the reloader's judgement, so a refused change stays refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path, PurePosixPath

from runner.checking.repairs import Key, Repairs, find_repairs, key_of
from runner.checking.tree import Tree, TreeChecker
from runner.core import findings
from runner.core.findings import Finding, Severity
from runner.core.layout import CONFIG_PATH, is_automation_path
from runner.core.lifecycle import Change
from runner.core.steps import Held, Proposed, Step, changed_ids, judge_step
from runner.core.version import Version, template_paths
from runner.errors import GitError
from runner.repo.git import CommitInfo, Entry, Git, GitSnapshot
from runner.repo.snapshot import MemorySnapshot, Snapshot

Fingerprint = tuple[str, str | None, tuple[tuple[str, str | None], ...]]


@dataclass
class HistoryResult:
    """Everything a history walk found, for `validate` and `plan`."""

    findings: list[Finding]
    base_tree: Tree
    final_tree: Tree
    net_changes: list[Change]
    steps: list[tuple[str | None, list[Change]]]
    # Per commit (None: the working tree), the step as judged: each automation's outcome and
    # what the runner holds after it (a merge's held versions include the sides it adopts).
    judged: list[tuple[str | None, Step]] = field(default_factory=list)
    # Keys of the findings HEAD (or the working tree) still carries: only these are placed
    # as annotations on HEAD's lines; the others belong to earlier commits.
    at_head: frozenset[Key] = frozenset()
    repairs: Repairs = field(default_factory=Repairs)

    def carried_at_head(self, finding: Finding) -> bool:
        """Whether HEAD's files still carry `finding` at its line."""
        return key_of(finding) in self.at_head


@dataclass
class _State:
    """The repository as the runner would hold it after one commit."""

    tree: Tree
    held: Held
    lifecycle_keys: frozenset[Key] = frozenset()
    tree_keys: frozenset[Key] = field(init=False)

    def __post_init__(self) -> None:
        self.tree_keys = frozenset(key_of(f) for f in self.tree.findings)


def walk_history(
    root: Path, base: str | None, now: datetime, head: str | None = None
) -> HistoryResult:
    """Walk BASE..HEAD, then the working tree; base None checks only the working tree.

    With `head` (a ref: what a push sends), walk BASE..head and leave the working tree out.
    """
    with Git(root) as git:
        return _Walk(git, now).run(base, head)


def validate_history(root: Path, base: str, now: datetime) -> list[Finding]:
    """Every finding of the walk from `base`, each attributed to the commit that caused it."""
    return walk_history(root, base, now).findings


class _Walk:
    def __init__(self, git: Git, now: datetime) -> None:
        self.git = git
        self.now = now
        self.checker = TreeChecker()
        self.found: dict[Key, Finding] = {}
        self.steps: list[tuple[str | None, list[Change]]] = []
        self.judged: list[tuple[str | None, Step]] = []
        self.step_error = False  # a refusal the branch does not repair

    def run(self, base: str | None, head_ref: str | None = None) -> HistoryResult:
        head = self.git.head() if head_ref is None else self.git.resolve(head_ref)
        if base is None:
            start = head
            commits: list[CommitInfo] = []
        else:
            base_sha = self.git.resolve(base)
            if head is None:
                raise GitError("HEAD has no commit yet: commit before validating with --base")
            start = self.git.merge_base(base_sha, head)
            if start is None:
                if self.git.is_shallow():
                    raise self.git.missing(base, "the history from base")
                raise GitError(f"`{base}` and HEAD share no history")
            commits = self.git.commits(start, head)
        start_state = self._fresh_state(start)
        states = self._walk_commits(start_state, commits, start)
        head_state = states[head] if head is not None and head in states else start_state
        final_state = self._working_tree(head_state) if head_ref is None else head_state
        repairs = find_repairs(self.judged, {c.sha for c in commits if len(c.parents) > 1})
        self.step_error = any(
            c.blocked and (index, c.id) not in repairs.steps
            for index, (_, step) in enumerate(self.judged)
            for c in step.changes
        )
        chain = _first_parent_chain(commits, head)
        changed = {
            c.id for sha, changes in self.steps if sha is None or sha in chain for c in changes
        }
        net = _check(start_state.held, _proposed(final_state.tree), self.now)
        if base is not None and not self.step_error:
            self._squash_unsafe(net, changed, start)
        for finding in final_state.tree.findings:
            self.found.setdefault(key_of(finding), finding.at_commit(None))
        at_head = final_state.tree_keys | final_state.lifecycle_keys
        found = repairs.apply(list(self.found.values()), at_head)
        final = final_state.tree.snapshot
        carried = {
            key_of(f)
            for f in found
            if f.commit is None
            or key_of(f) in at_head
            or (
                f.rule != "refused-then-repaired"
                and _unchanged(states.get(f.commit), final, f.path)
            )
        }
        return HistoryResult(
            found,
            start_state.tree,
            final_state.tree,
            net,
            self.steps,
            self.judged,
            frozenset(carried),
            repairs,
        )

    def _fresh_state(self, commit: str | None) -> _State:
        if commit is None:
            return _State(self.checker.check(MemorySnapshot({}), self.now), Held({}))
        snapshot = self.git.snapshot(commit)
        self._prefetch(snapshot, snapshot.paths())
        tree = self.checker.check(snapshot, self.now)
        return _State(tree, Held(dict(tree.versions), frozenset(self.git.retired_ids(commit))))

    def _walk_commits(
        self, start: _State, commits: Sequence[CommitInfo], start_sha: str | None
    ) -> dict[str, _State]:
        states: dict[str | None, _State] = {start_sha: start}
        pairs = [(c.sha, c.parents[0]) for c in commits if c.parents]
        diffs = dict(zip((sha for sha, _ in pairs), self.git.changes(pairs), strict=True))
        for commit in commits:
            parents = [self._state(states, p) for p in commit.parents]
            snapshot = self._snapshot(commit, parents, diffs)
            tree = self._check_snapshot(snapshot, parents, diffs.get(commit.sha))
            if len(parents) > 1:
                states[commit.sha] = self._merge(commit.sha, tree, parents)
            else:
                parent = parents[0] if parents else self._fresh_state(None)
                states[commit.sha] = self._step(commit.sha, tree, parent)
        return {sha: state for sha, state in states.items() if sha is not None}

    def _check_snapshot(
        self, snapshot: Snapshot, parents: list[_State], changes: Mapping[str, object] | None
    ) -> Tree:
        """Check `snapshot`; after one parent, only what changed since it is read again."""
        if len(parents) == 1 and changes is not None:
            tree = parents[0].tree
            read = {CONFIG_PATH} | tree.template_users.keys()
            if not any(p in read or p.startswith("automations/") for p in changes):
                return replace(tree, snapshot=snapshot)
            return self.checker.check(snapshot, self.now, previous=tree, changed=changes)
        return self.checker.check(snapshot, self.now)

    def _state(self, states: dict[str | None, _State], sha: str) -> _State:
        if sha not in states:  # a parent outside BASE..HEAD other than the merge base
            states[sha] = self._fresh_state(sha)
        return states[sha]

    def _snapshot(
        self,
        commit: CommitInfo,
        parents: list[_State],
        diffs: Mapping[str, dict[str, Entry | None]],
    ) -> Snapshot:
        first = parents[0].tree.snapshot if parents else None
        if isinstance(first, GitSnapshot):
            changes = diffs[commit.sha]
            snapshot = first.changed(commit.sha, changes)
            self._prefetch(snapshot, changes)
            return snapshot
        snapshot = self.git.snapshot(commit.sha)
        self._prefetch(snapshot, snapshot.paths())
        return snapshot

    def _prefetch(self, snapshot: GitSnapshot, paths: Iterable[str]) -> None:
        """Fetch the automation files the checker is about to read in one request."""
        wanted = (snapshot.blob_id(p) for p in paths if is_automation_path(p) or p == CONFIG_PATH)
        self.git.prefetch(b for b in wanted if b is not None)

    def _step(self, commit: str | None, tree: Tree, parent: _State) -> _State:
        """A non-merge commit (or the working tree) against its parent."""
        self._report_tree(tree, commit, parent.tree_keys)
        step = judge_step(parent.held, _proposed(tree), self.now)
        keys = self._report_changes(commit, _changed(step.changes), parent.lifecycle_keys)
        self.judged.append((commit, step))
        return _State(tree, step.held, keys)

    def _merge(self, commit: str, tree: Tree, parents: list[_State]) -> _State:
        """A merge: only conflict resolutions are checked, against the first parent."""
        tree_keys = frozenset().union(*(p.tree_keys for p in parents))
        self._report_tree(tree, commit, tree_keys)
        merged = _fingerprints(tree)
        sides = [_fingerprints(p.tree) for p in parents]
        first = parents[0].held.versions
        resolutions = _proposed(tree)
        children = dict(first)
        resolved: set[str] = set()
        adopted: dict[str, Version | None] = {}  # judged on their side
        for ident in set(merged).union(*sides):
            side = next(
                (i for i, fp in enumerate(sides) if fp.get(ident) == merged.get(ident)), None
            )
            if side is None:
                resolved.add(ident)
                _put(children, ident, resolutions.versions.get(ident))
            elif side > 0:
                adopted[ident] = parents[side].held.versions.get(ident)
                _put(children, ident, adopted[ident])
        retired = frozenset().union(*(p.held.retired for p in parents)) - first.keys()
        # Every changed id is judged, so a resolution sees what the sides changed (a source
        # deleted on a side); only the resolutions are reported and taken.
        invalid = {i: f for i, f in resolutions.invalid.items() if i in resolved}
        proposed = Proposed(children, invalid)
        judging = changed_ids(first, children) | invalid.keys()
        judged = judge_step(Held(first, retired), proposed, self.now, judging)
        step = replace(judged, changes=tuple(c for c in judged.changes if c.id in resolved))
        lifecycle_keys = frozenset().union(*(p.lifecycle_keys for p in parents))
        keys = self._report_changes(commit, _changed(step.changes), lifecycle_keys)
        versions = dict(judged.held.versions)
        for ident, version in adopted.items():  # as their side holds them
            _put(versions, ident, version)
        gone = {c.id for c in step.changes if c.kind == "deleted" and not c.blocked}
        held = Held(versions, (retired | gone) - versions.keys())
        self.judged.append((commit, replace(step, held=held)))
        return _State(tree, held, keys)

    def _working_tree(self, head: _State) -> _State:
        snapshot = self.git.working_tree()
        tree = self.checker.check(snapshot, self.now)
        if not _differs(head.tree, tree):
            return head
        return self._step(None, tree, head)

    def _report_tree(self, tree: Tree, commit: str | None, before: frozenset[Key]) -> None:
        for finding in tree.findings:
            key = key_of(finding)
            if key not in before:
                self.found.setdefault(key, finding.at_commit(commit))

    def _report_changes(
        self, commit: str | None, changes: list[Change], before: frozenset[Key]
    ) -> frozenset[Key]:
        self.steps.append((commit, changes))
        keys: set[Key] = set()
        for change in changes:
            for finding in change.findings:
                key = key_of(finding)
                keys.add(key)
                if key not in before:
                    self.found.setdefault(key, finding.at_commit(commit))
        return frozenset(keys)

    def _squash_unsafe(self, net: list[Change], changed: set[str], base: str | None) -> None:
        since = f" since {base[:7]}" if base else ""
        for change in net:
            errors = [f for f in change.findings if f.severity is Severity.ERROR]
            if not errors or change.id not in changed:
                continue
            first = errors[0]
            rules = ", ".join(sorted({f.rule for f in errors}))
            message = (
                f"every commit is legal, but the net change of `{change.id}`{since} is not "
                f"({rules}): a squash merge would be refused"
            )
            finding = findings.make(
                "squash-unsafe", first.path, message, first.line, first.col, automation=change.id
            )
            self.found.setdefault(key_of(finding), finding)


def _proposed(tree: Tree) -> Proposed:
    return Proposed(tree.versions, tree.invalid_files())


def _check(held: Held, proposed: Proposed, now: datetime) -> list[Change]:
    """The changes of one step (ids whose version changed) that are not "unchanged"."""
    return _changed(judge_step(held, proposed, now).changes)


def _changed(changes: Iterable[Change]) -> list[Change]:
    return [c for c in changes if c.kind != "unchanged"]


def _put(versions: dict[str, Version], ident: str, version: Version | None) -> None:
    if version is None:
        versions.pop(ident, None)
    else:
        versions[ident] = version


def _fingerprints(tree: Tree) -> dict[str, Fingerprint]:
    """Per id, the file and template blobs it is read from (equal = same version)."""
    snapshot = tree.snapshot
    found: dict[str, Fingerprint] = {}
    for path, loaded in tree.loaded.items():
        model = loaded.model
        ident = model.id if model is not None else _stem(path)
        named = template_paths(path, model).values() if model is not None else ()
        used = tuple(sorted((p, snapshot.blob_id(p)) for p in named if p is not None))
        found.setdefault(ident, (path, snapshot.blob_id(path), used))
    return found


def _differs(head: Tree, tree: Tree) -> bool:
    """Whether any file the checker reads differs between two trees."""
    relevant = {CONFIG_PATH} | head.template_users.keys() | tree.template_users.keys()
    for snapshot in (head.snapshot, tree.snapshot):
        relevant.update(p for p in snapshot.paths() if p.startswith("automations/"))
    return any(head.snapshot.blob_id(p) != tree.snapshot.blob_id(p) for p in relevant)


def _unchanged(state: _State | None, final: Snapshot, path: str) -> bool:
    """Whether `path` is at HEAD as it was in `state`'s commit (its lines are still there)."""
    if state is None:
        return False
    blob = state.tree.snapshot.blob_id(path)
    return blob is not None and blob == final.blob_id(path)


def _first_parent_chain(commits: Sequence[CommitInfo], head: str | None) -> set[str]:
    """The commits a squash of HEAD would fold together that are not merges."""
    by_sha = {c.sha: c for c in commits}
    chain: set[str] = set()
    current = by_sha.get(head) if head is not None else None
    while current is not None:
        if len(current.parents) <= 1:
            chain.add(current.sha)
        current = by_sha.get(current.parents[0]) if current.parents else None
    return chain


def _stem(path: str) -> str:
    return PurePosixPath(path).stem if is_automation_path(path) else path
