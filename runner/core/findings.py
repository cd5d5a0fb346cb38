"""Findings: one problem in one file, with its position, rule and severity.

Validation collects findings; reporters only render them; the exit code
depends only on them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from runner.core.rules import RULES


class Severity(StrEnum):
    """How much a finding matters: errors fail, warnings fail only with --strict."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Finding:
    """A problem at `path:line:col`, named by a stable rule id.

    `path` is repository-relative with forward slashes; `line` and `col` are
    1-based. `commit` is the full id of the commit that introduced the
    problem, or None for the working tree or a plain tree check.
    """

    path: str
    line: int
    col: int
    rule: str
    message: str
    severity: Severity = Severity.ERROR
    help: str | None = None
    commit: str | None = None
    automation: str | None = None

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown rule id {self.rule!r}")

    def at_commit(self, commit: str | None) -> Finding:
        """The same finding, attributed to `commit`."""
        return replace(self, commit=commit)

    @property
    def sort_key(self) -> tuple[int, str, int, int, str]:
        """Errors first, then by file and position."""
        return (
            0 if self.severity is Severity.ERROR else 1,
            self.path,
            self.line,
            self.col,
            self.rule,
        )


def make(
    rule: str,
    path: str,
    message: str,
    line: int = 1,
    col: int = 1,
    *,
    help: str | None = None,
    automation: str | None = None,
) -> Finding:
    """A finding of `rule` with the rule's default severity and help text."""
    spec = RULES[rule]
    return Finding(
        path=path,
        line=line,
        col=col,
        rule=rule,
        message=message,
        severity=Severity(spec.severity),
        help=help if help is not None else spec.help,
        automation=automation,
    )
