"""Reporters: render findings as text, JSON or GitHub workflow annotations; nothing else.

The JSON fields and the annotation order are documented in docs/output-formats.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from runner.core.findings import Finding, Severity

JSON_VERSION = 1

# Rules about the change between two versions: on GitHub, where only about ten
# annotations per step are shown, these matter most after errors come first.
LIFECYCLE_RULES = frozenset(
    {
        "transition-not-allowed",
        "edit-not-allowed",
        "start-at-not-scheduled",
        "stop-at-in-past",
        "stop-at-after-stop",
        "delete-running",
        "id-reused",
        "source-unavailable",
        "squash-unsafe",
        "rename-resets-dedupe",
        "stale-status",
    }
)


def render(
    found: Sequence[Finding],
    fmt: str,
    out: TextIO,
    *,
    summary_path: Path | None = None,
    annotate: Callable[[Finding], bool] | None = None,
) -> None:
    """Write `found` (already sorted) to `out` as `fmt`: text, json or github.

    With fmt github and a `summary_path` (the file named by GITHUB_STEP_SUMMARY),
    the full list is also appended to that file as a Markdown table. `annotate` says which
    findings become annotations (those HEAD's lines still carry); the others are counted in
    the log and listed in the summary with their commit.
    """
    if fmt == "github":
        _github(found, out, annotate or (lambda f: True))
        if summary_path is not None:
            with summary_path.open("a", encoding="utf-8") as summary:
                summary.write(summary_markdown(found))
        return
    renderer = _RENDERERS.get(fmt)
    if renderer is None:
        raise ValueError(f"unknown format {fmt!r}")
    renderer(found, out)


def counts(found: Sequence[Finding]) -> tuple[int, int]:
    """The number of errors and warnings."""
    errors = sum(1 for f in found if f.severity is Severity.ERROR)
    return errors, len(found) - errors


def summary_line(found: Sequence[Finding]) -> str:
    """`N errors, M warnings`, or `no findings`."""
    if not found:
        return "no findings"
    errors, warnings = counts(found)
    return f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}"


def short(commit: str | None) -> str | None:
    """The seven-character form of a commit id."""
    return commit[:7] if commit else None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# --- text ---------------------------------------------------------------------


def _text(found: Sequence[Finding], out: TextIO) -> None:
    colour = _is_terminal(out)
    for f in found:
        commit = f" [commit {short(f.commit)}]" if f.commit else ""
        severity = str(f.severity)
        if colour:
            code = "31" if f.severity is Severity.ERROR else "33"
            severity = f"\x1b[1;{code}m{severity}\x1b[0m"
        out.write(f"{f.path}:{f.line}:{f.col}: {severity}[{f.rule}] {f.message}{commit}\n")
        if f.help:
            out.write(f"  help: {f.help}\n")
    out.write(summary_line(found) + "\n")


def _is_terminal(out: TextIO) -> bool:
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty())


# --- json ---------------------------------------------------------------------


def as_json(found: Sequence[Finding]) -> dict[str, Any]:
    """The stable JSON document (version 1) of docs/output-formats.md."""
    errors, warnings = counts(found)
    return {
        "version": JSON_VERSION,
        "findings": [
            {
                "path": f.path,
                "line": f.line,
                "column": f.col,
                "severity": str(f.severity),
                "rule": f.rule,
                "message": f.message,
                "help": f.help,
                "commit": f.commit,
                "automation": f.automation,
            }
            for f in found
        ],
        "summary": {"errors": errors, "warnings": warnings},
    }


def _json(found: Sequence[Finding], out: TextIO) -> None:
    out.write(json.dumps(as_json(found), indent=2, ensure_ascii=False) + "\n")


# --- github -------------------------------------------------------------------


def github_order(found: Sequence[Finding]) -> list[Finding]:
    """Errors before warnings, lifecycle rules before others, else as given."""
    ranked = sorted(
        enumerate(found),
        key=lambda item: (
            item[1].severity is not Severity.ERROR,
            item[1].rule not in LIFECYCLE_RULES,
            item[0],
        ),
    )
    return [f for _, f in ranked]


def escape_data(text: str) -> str:
    """Escape a workflow command's message (actions/toolkit `escapeData`)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow command's property value (actions/toolkit `escapeProperty`)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(f: Finding) -> str:
    """One `::error file=…,line=…,col=…,title=…::message` workflow command."""
    # Format: https://docs.github.com/actions/reference/workflow-commands-for-github-actions
    properties = ",".join(
        f"{key}={escape_property(value)}"
        for key, value in (
            ("file", f.path),
            ("line", str(f.line)),
            ("col", str(f.col)),
            ("title", f.rule),
        )
    )
    message = f.message
    if f.commit:
        message += f" [commit {short(f.commit)}]"
    if f.help:
        message += f"\nhelp: {f.help}"
    return f"::{f.severity} {properties}::{escape_data(message)}"


def _github(found: Sequence[Finding], out: TextIO, annotate: Callable[[Finding], bool]) -> None:
    earlier = 0
    for f in github_order(found):
        if annotate(f):
            out.write(annotation(f) + "\n")
        else:
            earlier += 1
    out.write(summary_line(found) + "\n")
    if earlier:
        what = (
            "finding of an earlier commit is" if earlier == 1 else "findings of earlier commits are"
        )
        out.write(
            f"{earlier} {what} listed in the job summary with its commit (not on a line of HEAD)\n"
        )


def _cell(text: str | None) -> str:
    if not text:
        return ""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def summary_markdown(found: Sequence[Finding]) -> str:
    """The job-summary section: every finding in one Markdown table."""
    lines = ["## Postwright validate", "", summary_line(found).capitalize() + ".", ""]
    if found:
        lines += [
            "| file:line | severity | rule | message | help | commit |",
            "|---|---|---|---|---|---|",
        ]
        for f in github_order(found):
            commit = f"`{short(f.commit)}`" if f.commit else ""
            lines.append(
                f"| `{_cell(f.path)}:{f.line}` | {f.severity} | `{f.rule}` "
                f"| {_cell(f.message)} | {_cell(f.help)} | {commit} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


_RENDERERS: dict[str, Callable[[Sequence[Finding], TextIO], None]] = {
    "text": _text,
    "json": _json,
}
