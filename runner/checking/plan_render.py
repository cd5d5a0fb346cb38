"""The plan as text, JSON or Markdown (docs/output-formats.md); renderers only render."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from runner.checking.plan import JSON_VERSION, Entry, Note, Plan
from runner.checking.report import short


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
