"""`postwright plan`: what a change does to each automation (pure).

`build_plan` turns a history walk's changes into plan entries; plan_render.py renders them as
text, JSON or Markdown; the `plan` command (cli/checking.py) wires both to the git walk or to
a running Postwright's applied state.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from runner.checking.report import LIFECYCLE_RULES
from runner.core.findings import Finding, Severity

if TYPE_CHECKING:
    from runner.core.model import Status

JSON_VERSION = 1


class ChangeView(Protocol):
    """What the plan reads of a `runner.core.lifecycle.Change`."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def old_path(self) -> str | None: ...
    @property
    def new_path(self) -> str | None: ...
    @property
    def old_status(self) -> Status | None: ...
    @property
    def new_status(self) -> Status | None: ...
    @property
    def transition(self) -> bool: ...
    @property
    def edited(self) -> tuple[str, ...]: ...
    @property
    def lifecycle(self) -> tuple[str, ...]: ...
    @property
    def metadata(self) -> tuple[str, ...]: ...
    @property
    def findings(self) -> tuple[Finding, ...]: ...


@dataclass(frozen=True)
class Note:
    """A rule broken by a change, with the commit that broke it (None: working tree)."""

    rule: str
    message: str
    commit: str | None
    help: str | None = None


@dataclass(frozen=True)
class Impact:
    """What applying one change does at once to an automation's pending sends."""

    kind: str  # "cancels_now" (a stop or delete) | "due_within_24h" (a pause)
    count: int
    truncated: bool = False  # the runner listed its page limit: the count is a lower bound

    def as_json(self) -> dict[str, Any]:
        """`{"cancels_now": n}` or `{"due_within_24h": n}` (+ `"truncated": true`)."""
        payload: dict[str, Any] = {self.kind: self.count}
        if self.truncated:
            payload["truncated"] = True
        return payload

    def describe(self) -> str:
        """One line for the text and Markdown plans."""
        count = f"{self.count}+" if self.truncated else str(self.count)
        noun = "send" if self.count == 1 and not self.truncated else "sends"
        if self.kind == "cancels_now":
            return f"cancels {count} pending {noun} now"
        return f"{count} pending {noun} due within 24 h (cancelled if still paused then)"


@dataclass(frozen=True)
class Entry:
    """One automation's net change and what blocks it."""

    id: str
    change: str
    old_path: str | None
    new_path: str | None
    status: tuple[str | None, str | None] | None  # (from, to) when the status transitions
    edited: tuple[str, ...] = ()
    lifecycle: tuple[str, ...] = ()
    metadata: tuple[str, ...] = ()
    blocked: tuple[Note, ...] = ()
    warnings: tuple[Note, ...] = ()
    impact: Impact | None = None  # with --against: what applying it does to pending sends

    @property
    def path(self) -> str:
        """`old -> new` when the file moved, else the one path."""
        if self.old_path and self.new_path and self.old_path != self.new_path:
            return f"{self.old_path} -> {self.new_path}"
        return self.new_path or self.old_path or ""


@dataclass(frozen=True)
class Plan:
    """Every changed automation between `base` and `head` (None: the working tree)."""

    base: str | None
    head: str | None
    entries: tuple[Entry, ...] = ()
    unchanged: int = 0
    other_errors: int = 0  # errors of `validate` outside the change rules (invalid files)
    against: str | None = None  # the runner URL the working tree was compared with

    @property
    def blocked(self) -> bool:
        """Whether any change is blocked."""
        return any(entry.blocked for entry in self.entries)


def build_plan(
    net_changes: Sequence[ChangeView],
    steps: Sequence[tuple[str | None, Sequence[ChangeView]]],
    *,
    base: str | None,
    head: str | None,
    findings: Iterable[Finding] = (),
    known_ids: Iterable[str] = (),
) -> Plan:
    """Plan entries from the net changes, with the rules broken on the way.

    A change is blocked by the errors of the commit that made it (per step): a
    net change that is illegal only when squashed is not blocked, its
    `squash-unsafe` warning says why. Without steps the net findings count.
    `known_ids` (every id at base and head) lets unchanged ids be counted.
    """
    found = list(findings)
    per_id: dict[str, list[tuple[Finding, str | None]]] = {}
    first_seen: dict[str, ChangeView] = {}
    for commit, changes in steps:
        for change in changes:
            first_seen.setdefault(change.id, change)
            for f in change.findings:
                per_id.setdefault(change.id, []).append((f, f.commit or commit))
    if not steps:
        for change in net_changes:
            per_id[change.id] = [(f, f.commit) for f in change.findings]
    for f in found:
        if f.rule == "squash-unsafe" and f.automation is not None:
            per_id.setdefault(f.automation, []).append((f, f.commit))

    net = {change.id: change for change in net_changes}
    entries: list[Entry] = []
    for key in sorted(set(net) | {k for k, v in per_id.items() if v}):
        view = net.get(key) or first_seen.get(key)
        notes = per_id.get(key, [])
        if view is None or (view.kind == "unchanged" and not _errors(notes)):
            continue
        entries.append(_entry(view, view.kind if key in net else "unchanged", notes))
    other = sum(1 for f in found if f.severity is Severity.ERROR and f.rule not in LIFECYCLE_RULES)
    shown = {entry.id for entry in entries}
    unchanged = len(({c.id for c in net_changes} | set(known_ids)) - shown)
    return Plan(base, head, tuple(entries), unchanged, other)


def _errors(notes: Iterable[tuple[Finding, str | None]]) -> bool:
    return any(f.severity is Severity.ERROR for f, _ in notes)


def _entry(change: ChangeView, kind: str, notes: list[tuple[Finding, str | None]]) -> Entry:
    status = None
    if change.transition:
        status = (_str(change.old_status), _str(change.new_status))

    def pick(severity: Severity) -> tuple[Note, ...]:
        # A refused change is met again by every later step: name the first commit only.
        chosen: dict[tuple[str, str], Note] = {}
        for f, commit in notes:
            if f.severity is severity:
                chosen.setdefault((f.rule, f.message), Note(f.rule, f.message, commit, f.help))
        return tuple(chosen.values())

    return Entry(
        id=change.id,
        change=kind,
        old_path=change.old_path,
        new_path=change.new_path,
        status=status,
        edited=tuple(change.edited),
        lifecycle=tuple(change.lifecycle),
        metadata=tuple(change.metadata),
        blocked=pick(Severity.ERROR),
        warnings=pick(Severity.WARNING),
    )


def _str(status: Status | None) -> str | None:
    return None if status is None else str(status)
