"""Reporters: render findings as text, JSON or GitHub annotations; nothing else.

STUB (text only): the reporting work package adds json and github.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from runner.findings import Finding


def render(found: Sequence[Finding], fmt: str, out: TextIO) -> None:
    """Write `found` (already sorted) to `out` in format `fmt`."""
    for f in found:
        commit = f" [commit {f.commit[:7]}]" if f.commit else ""
        out.write(f"{f.path}:{f.line}:{f.col}: {f.severity}[{f.rule}] {f.message}{commit}\n")
        if f.help:
            out.write(f"  help: {f.help}\n")
