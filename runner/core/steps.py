"""One step of applying the files (a commit, a reload, the working tree), judged; pure.

The runner holds, per id, the last accepted version (`Held`); ids deleted earlier are retired.
A step proposes the versions read from its files and names the ids whose files are invalid
(`Proposed`). Every judged id is then accepted, or refused and its last accepted version
stays (docs/rules.md). `validate --base` and the reloader both judge through `judge_step`, so
a branch is checked exactly as the runner applies it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from runner.core.findings import Finding
from runner.core.lifecycle import Change, check_step
from runner.core.model import EmailTrigger
from runner.core.version import Version


@dataclass(frozen=True)
class Held:
    """What the runner holds before or after a step: the accepted versions and retired ids."""

    versions: Mapping[str, Version]
    retired: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Proposed:
    """What a step's files say: the valid versions by id, and id -> errors of invalid files."""

    versions: Mapping[str, Version]
    invalid: Mapping[str, tuple[Finding, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """The verdict on one id in one step: accepted, or refused with its findings."""

    id: str
    accepted: bool
    change: Change | None  # None: the file is invalid and the id was never accepted
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class Step:
    """One judged step: the lifecycle changes of the judged ids and what is held after it."""

    changes: tuple[Change, ...]  # one per judged id that has a version before or after
    invalid: Mapping[str, tuple[Finding, ...]]  # judged ids whose file is invalid
    children: Mapping[str, Version]  # the versions judged against the held ones
    held: Held  # after the step

    def outcomes(self) -> dict[str, Outcome]:
        """Per judged id, accepted or refused (an invalid file is refused with its errors)."""
        found: dict[str, Outcome] = {}
        for change in self.changes:
            errors = self.invalid.get(change.id)
            if errors is not None:
                found[change.id] = Outcome(change.id, False, change, errors)
            else:
                found[change.id] = Outcome(change.id, not change.blocked, change, change.findings)
        for ident, errors in self.invalid.items():
            found.setdefault(ident, Outcome(ident, False, None, errors))
        return found


def judge_step(
    held: Held, proposed: Proposed, now: datetime, judged: Collection[str] | None = None
) -> Step:
    """Judge `proposed` against `held` for the `judged` ids (None: those whose version changed
    and those whose file is invalid).

    An invalid file keeps its id's held version; a refused change keeps it too. The email-trigger
    sources a judged version names are judged along as context, as they are held.
    """
    parents = held.versions
    children = {i: v for i, v in proposed.versions.items() if i not in proposed.invalid}
    for ident in proposed.invalid.keys() & parents.keys():
        children[ident] = parents[ident]
    if judged is None:
        chosen = changed_ids(parents, children) | proposed.invalid.keys()
    else:
        chosen = set(judged)
    some_parents, some_children = _with_sources(parents, children, chosen)
    changes = tuple(
        c
        for c in check_step(some_parents, some_children, now, retired_ids=held.retired)
        if c.id in chosen
    )
    invalid = {i: found for i, found in proposed.invalid.items() if i in chosen}
    return Step(changes, invalid, children, _after(held, children, changes))


def changed_ids(parents: Mapping[str, Version], children: Mapping[str, Version]) -> set[str]:
    """Ids whose version object differs: a version is shared by every snapshot where its file
    and templates are unchanged, so identity says "unchanged" without comparing definitions."""
    return {i for i in parents.keys() | children.keys() if parents.get(i) is not children.get(i)}


def replay(start: Held, proposals: Iterable[Proposed], now: datetime) -> list[Step]:
    """Judge a sequence of versions one step after the other, each against what the last held."""
    steps: list[Step] = []
    held = start
    for proposed in proposals:
        step = judge_step(held, proposed, now)
        steps.append(step)
        held = step.held
    return steps


def repaired(steps: Iterable[Step]) -> set[tuple[int, str]]:
    """(step index, id) of every refusal that a later step ends by accepting that id."""
    refused: dict[str, list[int]] = {}
    found: set[tuple[int, str]] = set()
    for index, step in enumerate(steps):
        for ident, outcome in step.outcomes().items():
            if outcome.accepted:
                found.update((at, ident) for at in refused.pop(ident, []))
            else:
                refused.setdefault(ident, []).append(index)
    return found


def _with_sources(
    parents: Mapping[str, Version], children: Mapping[str, Version], judged: set[str]
) -> tuple[dict[str, Version], dict[str, Version]]:
    """The judged ids, plus the email-trigger sources they name as context (unchanged)."""
    some_parents = {i: parents[i] for i in judged if i in parents}
    some_children = {i: children[i] for i in judged if i in children}
    for version in list(some_children.values()):
        trigger = version.model.trigger
        source = trigger.automation if isinstance(trigger, EmailTrigger) else None
        if source is None or source in judged:
            continue
        if source in parents:  # judged as held: its own file change is not this step's
            some_parents[source] = some_children[source] = parents[source]
        elif source in children:
            some_children[source] = children[source]
    return some_parents, some_children


def _after(held: Held, children: Mapping[str, Version], changes: Iterable[Change]) -> Held:
    """The versions held after the step: accepted changes taken, refused ones not."""
    versions = dict(held.versions)
    gone: set[str] = set()
    for change in changes:
        if change.blocked:
            continue
        version = children.get(change.id)
        if version is None:
            versions.pop(change.id, None)
            gone.add(change.id)
        else:
            versions[change.id] = version
    return Held(versions, (held.retired | gone) - versions.keys())
