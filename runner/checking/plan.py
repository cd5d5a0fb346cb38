"""`postwright plan`: what a change does to each automation, as text, JSON or Markdown.

`build_plan` turns a history walk's changes into plan entries (pure);
`render_plan` only renders them; `run_plan` wires the two to the git walk, and
`run_plan_against` to a running Postwright's applied state with runtime impact.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from runner.checking.report import LIFECYCLE_RULES, short
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


def run_plan(root: Path, base: str | None, now: datetime, fmt: str, out: TextIO) -> int:
    """Walk the history from `base` (or HEAD to the working tree), print the plan.

    Returns 1 when any change is blocked, else 0.
    """
    from runner.checking.walk import walk_history

    result = walk_history(root, base, now)
    plan = build_plan(
        result.net_changes,
        result.steps,
        base=result.base_tree.snapshot.commit or base,
        head=result.final_tree.snapshot.commit,
        findings=result.findings,
        known_ids=result.base_tree.versions.keys() | result.final_tree.versions.keys(),
    )
    render_plan(plan, fmt, out)
    return 1 if plan.blocked else 0


def run_plan_against(
    root: Path, url: str, api_key: str | None, now: datetime, fmt: str, out: TextIO
) -> int:
    """The working tree against what the runner at `url` has applied, with runtime impact.

    Returns 1 when any change is blocked, else 0.
    """
    from runner.checking.against import RunnerClient, check_against, fetch_deployed, impact_of

    with RunnerClient(url, api_key) as client:
        deployed = fetch_deployed(client)
        result = check_against(root, deployed, now)
        plan = build_plan(
            result.changes,
            [],
            base=None,
            head=None,
            findings=result.findings,
            known_ids=deployed.versions.keys() | result.children.keys(),
        )
        changes = {change.id: change for change in result.changes}
        entries = tuple(
            replace(entry, impact=impact_of(changes[entry.id], client, now))
            if entry.id in changes
            else entry
            for entry in plan.entries
        )
    plan = replace(plan, entries=entries, against=client.url)
    render_plan(plan, fmt, out)
    return 1 if plan.blocked else 0


def render_plan(plan: Plan, fmt: str, out: TextIO) -> None:
    """Write `plan` to `out` as text, json or markdown."""
    renderer = _RENDERERS.get(fmt)
    if renderer is None:
        raise ValueError(f"unknown plan format {fmt!r}")
    renderer(plan, out)


# --- shared wording -------------------------------------------------------------


def _status(entry: Entry) -> str:
    if entry.status is None:
        return ""
    old, new = entry.status
    return f"{old or '(new)'} -> {new or '(deleted)'}"


def _note(note: Note) -> str:
    commit = f" [commit {short(note.commit)}]" if note.commit else ""
    return f"{note.rule}: {note.message}{commit}"


def _heading(plan: Plan) -> str:
    base = plan.against or short(plan.base) or "HEAD"
    head = short(plan.head) or "working tree"
    return f"plan {base} -> {head}"


def _footer(plan: Plan) -> list[str]:
    blocked = sum(1 for entry in plan.entries if entry.blocked)
    lines = [
        f"{len(plan.entries)} changed, {plan.unchanged} unchanged, {blocked} blocked"
        if plan.entries
        else f"no automation changes ({plan.unchanged} unchanged)"
    ]
    if plan.other_errors:
        lines.append(
            f"{plan.other_errors} other errors in the files: run `postwright validate` for them"
        )
    return lines


# --- text -----------------------------------------------------------------------


def _details(entry: Entry) -> list[tuple[str, str]]:
    rows = [
        ("status", _status(entry)),
        ("edited", ", ".join(entry.edited)),
        ("lifecycle", ", ".join(entry.lifecycle)),
        ("metadata", ", ".join(entry.metadata)),
        ("impact", entry.impact.describe() if entry.impact else ""),
    ]
    for label, notes in (("blocked", entry.blocked), ("warning", entry.warnings)):
        for note in notes:
            rows.append((label, _note(note)))
            if note.help:
                rows.append(("  help", note.help))
    return [(label, value) for label, value in rows if value]


def _text(plan: Plan, out: TextIO) -> None:
    isatty = getattr(out, "isatty", None)
    if isatty is not None and isatty():
        _rich(plan, out)
        return
    out.write(_heading(plan) + "\n")
    for entry in plan.entries:
        out.write(f"{entry.id}: {entry.change} {entry.path}\n")
        for label, value in _details(entry):
            out.write(f"  {label}: {value}\n")
    for line in _footer(plan):
        out.write(line + "\n")


def _rich(plan: Plan, out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=out, highlight=False)
    table = Table(title=_heading(plan), show_lines=True)
    for column in ("automation", "change", "path", "details"):
        table.add_column(column)
    for entry in plan.entries:
        details = Text()
        for label, value in _details(entry):
            style = {"blocked": "bold red", "warning": "yellow"}.get(label, "")
            details.append(f"{label}: ", style=style or "dim")
            details.append(value + "\n", style=style)
        details.rstrip()
        change = Text(entry.change, style="bold red" if entry.blocked else "bold")
        table.add_row(Text(entry.id), change, Text(entry.path), details)
    if plan.entries:
        console.print(table)
    for line in _footer(plan):
        console.print(Text(line))


# --- json -----------------------------------------------------------------------


def as_json(plan: Plan) -> dict[str, Any]:
    """The stable JSON document (version 1) of docs/output-formats.md."""

    def notes(items: tuple[Note, ...]) -> list[dict[str, str | None]]:
        return [
            {"rule": n.rule, "message": n.message, "help": n.help, "commit": n.commit}
            for n in items
        ]

    def entry(e: Entry) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": e.id,
            "change": e.change,
            "old_path": e.old_path,
            "new_path": e.new_path,
            "status": None if e.status is None else {"from": e.status[0], "to": e.status[1]},
            "edited": list(e.edited),
            "lifecycle": list(e.lifecycle),
            "metadata": list(e.metadata),
            "blocked": notes(e.blocked),
            "warnings": notes(e.warnings),
        }
        if plan.against is not None:  # the keys exist only with --against
            item["impact"] = e.impact.as_json() if e.impact else None
        return item

    document: dict[str, Any] = {"version": JSON_VERSION, "base": plan.base, "head": plan.head}
    if plan.against is not None:
        document["against"] = plan.against
    document["automations"] = [entry(e) for e in plan.entries]
    document["unchanged"] = plan.unchanged
    document["other_errors"] = plan.other_errors
    return document


def _json(plan: Plan, out: TextIO) -> None:
    out.write(json.dumps(as_json(plan), indent=2, ensure_ascii=False) + "\n")


# --- markdown -------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "<br>")


def _code(items: Iterable[str]) -> str:
    return ", ".join(f"`{_cell(item)}`" for item in items)


def _markdown(plan: Plan, out: TextIO) -> None:
    base = f"`{short(plan.base)}`" if plan.base else "`HEAD`"
    if plan.against:
        base = f"the runner at `{_cell(plan.against)}`"
    head = f"`{short(plan.head)}`" if plan.head else "the working tree"
    lines = ["## Postwright plan", "", f"From {base} to {head}.", ""]
    if plan.entries:
        columns = ["automation", "change", "path", "status", "edited", "lifecycle", "metadata"]
        columns += ["blocked"] + (["impact"] if plan.against else [])
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for e in plan.entries:
            blocked = _code(dict.fromkeys(n.rule for n in e.blocked))
            cells = [
                f"`{e.id}`",
                f"**{e.change}**" if e.blocked else e.change,
                f"`{_cell(e.path)}`",
                _status(e),
                _code(e.edited),
                _code(e.lifecycle),
                _code(e.metadata),
                f"**{blocked}**" if blocked else "",
            ]
            if plan.against:
                cells.append(_cell(e.impact.describe()) if e.impact else "")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += [line[0].upper() + line[1:] + "." for line in _footer(plan)]
    lines.append("")
    _markdown_notes(plan, lines)
    out.write("\n".join(lines))


def _markdown_notes(plan: Plan, lines: list[str]) -> None:
    for title, pick in (("Blocked", _pick_blocked), ("Warnings", _pick_warnings)):
        items = [(e, n) for e in plan.entries for n in pick(e)]
        if not items:
            continue
        lines += [f"### {title}", ""]
        for entry, note in items:
            commit = f" (commit `{short(note.commit)}`)" if note.commit else ""
            help = f" — {_cell(note.help)}" if note.help else ""
            lines.append(f"- `{entry.id}`: `{note.rule}` {_cell(note.message)}{commit}{help}")
        lines.append("")


def _pick_blocked(entry: Entry) -> tuple[Note, ...]:
    return entry.blocked


def _pick_warnings(entry: Entry) -> tuple[Note, ...]:
    return entry.warnings


_RENDERERS: dict[str, Callable[[Plan, TextIO], None]] = {
    "text": _text,
    "json": _json,
    "markdown": _markdown,
}
