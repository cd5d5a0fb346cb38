"""`index.md` of a preview folder: per automation what changes and when it sends (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Side:
    """An automation's subject and sender in one version (None: no such version)."""

    subject: str
    sender: str
    status: str


@dataclass
class Item:
    """One changed automation in the preview."""

    id: str
    change: str  # created | deleted | edited | moved | status | ...
    path: str
    before: Side | None
    after: Side | None
    lifecycle: tuple[str | None, str | None] | None = None  # (from, to) of a status change
    timing: list[str] = field(default_factory=list)
    firings: list[datetime] = field(default_factory=list)
    firings_zone: str = "UTC"
    rendered_subject: str | None = None
    sample: str | None = None  # where the sample subscriber and event came from
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # render errors, skipped screenshots
    blocked: list[str] = field(default_factory=list)


def render_index(items: Sequence[Item], base: str | None, head: str | None) -> str:
    """The Markdown of the preview's index."""
    since = f"`{base[:7]}`" if base else "HEAD"
    until = f"`{head[:7]}`" if head else "the working tree"
    lines = [f"# Postwright preview: {since} → {until}", ""]
    if not items:
        lines.append("No automation changes.")
        return "\n".join(lines) + "\n"
    noun = "automation changes" if len(items) != 1 else "automation change"
    lines += [f"{len(items)} {noun}.", ""]
    for item in items:
        lines += _item(item)
    return "\n".join(lines).rstrip() + "\n"


def _item(item: Item) -> list[str]:
    lines = [f"## `{item.id}` ({item.change})", "", f"File: `{item.path}`", ""]
    lines += ["| | before | after |", "|---|---|---|"]
    for label, name in (("Subject", "subject"), ("From", "sender"), ("Status", "status")):
        was = getattr(item.before, name) if item.before is not None else None
        now = getattr(item.after, name) if item.after is not None else None
        lines.append(_row(label, was, now))
    lines.append("")
    if item.lifecycle is not None:
        old, new = item.lifecycle
        lines += [f"**Lifecycle:** {old or 'new'} → {new or 'deleted'}", ""]
    elif item.after is None and item.change == "deleted":
        lines += ["**Lifecycle:** deleted (the runner keeps its history)", ""]
    if item.rendered_subject is not None:
        lines += [f"Rendered subject: {_cell(item.rendered_subject)}", ""]
    if item.timing:
        lines += [f"- {line}" for line in item.timing]
        lines.append("")
    if item.firings:
        lines.append("Next five firings:")
        lines += [f"- {_when(at, item.firings_zone)}" for at in item.firings]
        lines.append("")
    if item.sample is not None:
        lines += [f"Sample subscriber and event: {item.sample}", ""]
    if item.files:
        lines += ["Files: " + ", ".join(f"[{name}]({item.id}/{name})" for name in item.files), ""]
    lines += [f"> **Blocked:** {note}" for note in item.blocked]
    lines += [f"> {note}" for note in item.notes]
    if item.blocked or item.notes:
        lines.append("")
    return lines


def _row(label: str, before: str | None, after: str | None) -> str:
    if before is not None and before == after:
        return f"| {label} | {_cell(before)} | (unchanged) |"
    old = _cell(before) if before is not None else "—"
    new = _cell(after) if after is not None else "—"
    return f"| {label} | {old} | {new} |"


def _cell(text: str) -> str:
    flat = " ".join(text.split()).replace("|", "\\|")
    return f"`{flat}`" if "`" not in flat else flat


def _when(at: datetime, zone: str) -> str:
    from zoneinfo import ZoneInfo

    local = at.astimezone(ZoneInfo(zone))
    return f"{local:%a %Y-%m-%d %H:%M} {zone} ({at:%Y-%m-%dT%H:%MZ})"
