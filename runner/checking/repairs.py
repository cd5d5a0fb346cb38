"""Refusals a later commit repairs: the branch is judged as the runner applies it.

The runner refuses an invalid or illegal version and keeps the last accepted one; when a later
commit of the same branch is accepted for that automation, the runner ends where HEAD is and
the refusal is history, not a failure. Each such refusal episode becomes one
`refused-then-repaired` warning naming the refused commit and the repairing one; what HEAD
still carries stays an error (docs/rules.md, docs/output-formats.md).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from runner.core import findings
from runner.core.findings import Finding, Severity
from runner.core.lifecycle import Change
from runner.core.steps import Step, repaired

Key = tuple[str, str, str, int]


def key_of(finding: Finding) -> Key:
    """Findings are the same problem when these agree; the commit is left out on purpose."""
    return (finding.path, finding.rule, finding.message, finding.line)


@dataclass(frozen=True)
class Repairs:
    """What a walk's repaired refusals change in its report."""

    warnings: tuple[Finding, ...] = ()  # one per refusal episode
    hidden: frozenset[Key] = frozenset()  # error keys of repaired refusals, now the warnings
    steps: frozenset[tuple[int, str]] = frozenset()  # (step index, id) of repaired refusals
    unrepaired: frozenset[Key] = frozenset()  # error keys of refusals HEAD depends on

    def apply(self, found: Sequence[Finding], at_head: Collection[Key]) -> list[Finding]:
        """`found` with repaired errors replaced by their warnings; HEAD's errors, and those of
        refusals HEAD depends on, stay errors. An earlier commit's error that is no refusal
        (a `.yml` file, `postwright.yaml`) and that HEAD no longer has is a warning too."""
        kept: list[Finding] = []
        for finding in found:
            key = key_of(finding)
            if key in at_head or key in self.unrepaired or not _error(finding):
                kept.append(finding)
            elif key not in self.hidden:
                kept.append(_fixed_later(finding) if finding.commit else finding)
        return kept + list(self.warnings)

    def steps_view(
        self, steps: Sequence[tuple[str | None, list[Change]]]
    ) -> list[tuple[str | None, list[Change]]]:
        """The walk's per-commit changes with a repaired refusal's errors left out (for plan),
        so a repaired change is not shown as blocked."""
        view: list[tuple[str | None, list[Change]]] = []
        for index, (commit, changes) in enumerate(steps):
            view.append(
                (
                    commit,
                    [
                        replace(c, findings=tuple(f for f in c.findings if not _error(f)))
                        if (index, c.id) in self.steps
                        else c
                        for c in changes
                    ],
                )
            )
        return view


def find_repairs(
    judged: Sequence[tuple[str | None, Step]], merges: Collection[str] = ()
) -> Repairs:
    """The refusal episodes of a walk that a later step of it repairs.

    An episode (consecutive refusals of one id) ends when a later step accepts the id
    (`core.steps.repaired`) or, in a non-merge step, no longer judges it: its file is gone and
    nothing was held, or it is back to the held version. Either way the runner ends where the
    branch does. A merge judges only its conflict resolutions, so it ends no episode by
    leaving an id out. Episodes still open at the end are what HEAD depends on.
    """
    steps = [step for _, step in judged]
    fixed = set(repaired(steps))
    hidden: set[Key] = set()
    open_: dict[str, list[int]] = {}  # id -> the step indexes of its open episode
    warnings: list[Finding] = []
    for index, (commit, step) in enumerate(judged):
        outcomes = step.outcomes()
        for ident in sorted(open_):
            outcome = outcomes.get(ident)
            ended = outcome.accepted if outcome is not None else commit not in merges
            if ended:
                refused = open_.pop(ident)
                fixed.update((at, ident) for at in refused)
                warnings.append(_warning(ident, judged[refused[0]], commit))
        for ident, outcome in sorted(outcomes.items()):
            if not outcome.accepted:
                open_.setdefault(ident, []).append(index)
    unrepaired: set[Key] = set()
    for index, step in enumerate(steps):
        for ident, outcome in step.outcomes().items():
            if not outcome.accepted:
                keys = {key_of(f) for f in outcome.findings if _error(f)}
                (hidden if (index, ident) in fixed else unrepaired).update(keys)
    return Repairs(tuple(warnings), frozenset(hidden), frozenset(fixed), frozenset(unrepaired))


def _warning(ident: str, refused: tuple[str | None, Step], repair: str | None) -> Finding:
    commit, step = refused
    outcome = step.outcomes()[ident]
    errors = [f for f in outcome.findings if _error(f)]
    first = errors[0] if errors else None
    rules = ", ".join(dict.fromkeys(f.rule for f in errors)) or "refused"
    why = f"{rules}: {first.message}" if first is not None else rules
    by = f"commit {repair[:7]}" if repair else "the uncommitted changes"
    message = (
        f"`{ident}` is refused at this commit ({why}); {by} repairs it, so the runner skips "
        "this version and ends where the branch does"
    )
    path, line, col = _where(outcome.change, first)
    warning = findings.make("refused-then-repaired", path, message, line, col, automation=ident)
    return warning.at_commit(commit)


def _fixed_later(finding: Finding) -> Finding:
    """An earlier commit's error that is no refusal, gone at HEAD: a warning naming it."""
    message = (
        f"{finding.message} ({finding.rule}); a later commit of the branch fixes it, and HEAD "
        "no longer has it"
    )
    warning = findings.make(
        "refused-then-repaired",
        finding.path,
        message,
        finding.line,
        finding.col,
        automation=finding.automation,
    )
    return warning.at_commit(finding.commit)


def _where(change: Change | None, first: Finding | None) -> tuple[str, int, int]:
    if first is not None:
        return first.path, first.line, first.col
    path = (change.new_path or change.old_path) if change is not None else None
    return path or "", 1, 1


def _error(finding: Finding) -> bool:
    return finding.severity is Severity.ERROR
