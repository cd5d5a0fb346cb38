"""The lifecycle rules against a small reference model of the change rules, over random
histories of two automations and a shared template file.

The model below is written from the documented rules (docs/rules.md, "Status transitions",
and docs/decisions.md, "Lifecycle and history"), not from runner/core/lifecycle.py: the
transition table, the edit rule (a definition compared by content, defaults filled in),
lifecycle times, metadata, deletes and ids. Each history is judged step by step the way the
runner applies it: a refused version leaves the last accepted one in place, and later
versions are judged against that. The product is asked twice: through `check_step` on every
step (many examples, no I/O), and through the real history walk over a real git repository
(`walk_history`, fewer examples).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from runner.checking.walk import walk_history
from runner.core import lifecycle
from runner.core.loader import load_automation
from runner.core.version import Version
from tests.gitrepo import GitRepo
from tests.reliability.profiles import examples

pytestmark = pytest.mark.reliability

# --- the reference model -----------------------------------------------------------------

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
# Instants a file may name, and the instants a step is judged at (non-decreasing through a
# history, as the runner applies commits one after another; the walk judges all at NOW).
INSTANTS = tuple(NOW + days * DAY for days in (-500, -150, 0, 200, 400))
CLOCK = tuple(NOW + days * DAY for days in (-600, -500, -300, -150, 0, 200, 300, 400, 450))
SEOUL = timezone(timedelta(hours=9))
IDS = ("a", "b")
STATUSES = ("draft", "scheduled", "running", "paused", "stopped")
WAITS = {None: 0, "0s": 0, "1d": 86_400, "24h": 86_400, "2d": 172_800}
BODIES = ("inline A", "inline B", "file")  # "file": the shared templates/body.html
TEMPLATE_TEXTS = ("A", "B")

# The table of allowed transitions, effective status of the parent -> written status of the
# child; None is a new file. Written out from the documentation's table, row by row.
ALLOWED = {
    None: {"draft", "scheduled", "running"},
    "draft": {"scheduled", "running"},
    "scheduled": {"draft", "running"},
    "running": {"paused", "stopped"},
    "paused": {"running", "stopped"},
    "stopped": set(),
}
EDITABLE = {"draft", "paused"}


@dataclass(frozen=True)
class Spec:
    """One automation file as the history writes it."""

    ident: str
    status: str
    start_at: datetime | None = None
    stop_at: datetime | None = None
    name: str | None = None
    body: str = "inline A"
    wait: str | None = None
    spelled_out: bool = False  # defaults written out, a comment, instants at +09:00
    folder: str = ""  # "" or "sub/": folders only organise
    broken: bool = False  # not a YAML mapping at all

    def valid(self) -> bool:
        """Whether the file is a valid automation on its own."""
        if self.broken or (self.status == "scheduled" and self.start_at is None):
            return False
        return not (self.start_at and self.stop_at and self.stop_at <= self.start_at)

    def definition(self, template: str) -> tuple[str, int]:
        """What the edit rule compares: the body's text and the wait in seconds."""
        text = template if self.body == "file" else self.body.removeprefix("inline ")
        return text, WAITS[self.wait]


def effective(spec: Spec, now: datetime) -> str:
    """Scheduled runs from `start_at`; once started, it is stopped from `stop_at`."""
    status = spec.status
    if status == "scheduled" and spec.start_at is not None and spec.start_at <= now:
        status = "running"
    if status in ("running", "paused") and spec.stop_at is not None and spec.stop_at <= now:
        status = "stopped"
    return status


@dataclass(frozen=True)
class Change:
    """One id's change in one step, as the model sees it."""

    ident: str
    parent: Spec | None  # the accepted version
    child: Spec | None  # the file now (None: no file)
    parent_template: str
    child_template: str
    now: datetime


def refusal(change: Change, retired: frozenset[str]) -> str | None:
    """The rule a change breaks (None when it is allowed)."""
    parent, child, now = change.parent, change.child, change.now
    if child is None:
        return "delete while running" if parent and effective(parent, now) == "running" else None
    if not child.valid():
        return "invalid file"
    if parent is None:  # a new file: the table's first row, a fresh id, no stop in the past
        if change.ident in retired:
            return "id reused"
        if child.status not in ALLOWED[None]:
            return f"new file as {child.status}"
        return "stop_at in the past" if child.stop_at and child.stop_at <= now else None
    return _between(change, parent, child)


def _between(change: Change, parent: Spec, child: Spec) -> str | None:
    """The rule a change between two versions breaks: status, edit, lifecycle times."""
    now = change.now
    reached = effective(parent, now)
    if child.status not in (parent.status, reached) and child.status not in ALLOWED[reached]:
        return f"{reached} -> {child.status}"
    edited = parent.definition(change.parent_template) != child.definition(change.child_template)
    if edited and (reached == "stopped" or not {reached, child.status} & EDITABLE):
        return f"edit {reached} -> {child.status}"
    if child.start_at is not None and child.start_at != parent.start_at:
        # Added or moved only by a child written scheduled, and only before the start.
        if child.status != "scheduled" or reached not in ("draft", "scheduled"):
            return f"start_at moved, {reached} -> {child.status}"
    if child.stop_at != parent.stop_at:
        if reached == "stopped":
            return "stop_at changed after the stop"
        if child.stop_at is not None and child.stop_at <= now:
            return "stop_at in the past"
    return None  # metadata, folders and spelling never matter


@dataclass(frozen=True)
class Step:
    """One commit: the file of each id (None: absent), the shared template's text, and the
    instant the step is judged at."""

    files: Mapping[str, Spec | None]
    template: str
    now: datetime = NOW


@dataclass
class Model:
    """What the runner holds after each step, as the model sees it."""

    accepted: dict[str, tuple[Spec, str]]  # id -> (spec, the template text it was read with)
    retired: set[str]

    @classmethod
    def holding(cls, start: Step) -> Model:
        """The model holding the files of `start` as accepted."""
        held = {i: (spec, start.template) for i, spec in start.files.items() if spec is not None}
        return cls(held, set())

    def apply(self, step: Step) -> dict[str, str | None]:
        """Judge one step: per id with a file or an accepted version, the rule it breaks."""
        verdicts: dict[str, str | None] = {}
        retired = frozenset(self.retired)
        for ident in IDS:
            child = step.files.get(ident)
            parent, parent_template = self.accepted.get(ident, (None, step.template))
            if child is None and parent is None:
                continue
            change = Change(ident, parent, child, parent_template, step.template, step.now)
            verdicts[ident] = refusal(change, retired)
            if verdicts[ident] is not None:
                continue
            if child is None:
                del self.accepted[ident]
                self.retired.add(ident)
            else:
                self.accepted[ident] = (child, step.template)
        return verdicts


# --- files --------------------------------------------------------------------------------


def path_of(spec: Spec) -> str:
    return f"automations/{spec.folder}{spec.ident}.yaml"


def instant(value: datetime, spelled_out: bool) -> str:
    if spelled_out:  # the same instant written in another offset is the same value
        return value.astimezone(SEOUL).isoformat()
    return value.isoformat().replace("+00:00", "Z")


def yaml_of(spec: Spec) -> str:
    """The automation file of a spec."""
    if spec.broken:
        return f"id: {spec.ident}\nstatus: [unclosed\n"
    lines = ["# written by the reliability model"] if spec.spelled_out else []
    lines.append(f"id: {spec.ident}")
    if spec.name:
        lines.append(f"name: {spec.name}")
    lines.append(f"status: {spec.status}")
    for key in ("start_at", "stop_at"):
        value = getattr(spec, key)
        if value is not None:
            lines.append(f"{key}: {instant(value, spec.spelled_out)}")
    lines.append("trigger: {type: api}")
    if spec.wait:
        lines.append(f"wait: {spec.wait}")
    if spec.spelled_out:
        lines += ["retrigger: false", "provider: default", "exit_on: []"]
    lines += ["email:", "  from: news@shop.test", "  subject: Hello"]
    if spec.body == "file":
        climb = "../" * (spec.folder.count("/") + 1)
        lines.append(f"  html_file: {climb}templates/body.html")
    else:
        lines.append(f"  html: {spec.body.removeprefix('inline ')}")
    return "\n".join(lines) + "\n"


def version_of(spec: Spec, template: str) -> Version | None:
    """The product's valid version of a spec's file, or None when the loader refuses it."""
    loaded = load_automation(path_of(spec), yaml_of(spec).encode())
    if loaded.model is None:
        return None
    return Version.of(loaded, {"html_file": template} if spec.body == "file" else {})


# --- histories ----------------------------------------------------------------------------

moments = st.one_of(st.none(), st.sampled_from(INSTANTS))
_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "status": st.sampled_from(STATUSES),
    "start_at": moments,
    "stop_at": moments,
    "name": st.sampled_from([None, "One", "Two"]),
    "body": st.sampled_from(BODIES),
    "wait": st.sampled_from(list(WAITS)),
    "spelled_out": st.booleans(),
    "folder": st.sampled_from(["", "sub/"]),
}
# A change picks one or two of these; the status and lifecycle times come up most often,
# since the rules are about them.
_CHANGED = ["status"] * 4 + ["start_at", "stop_at"] * 2 + sorted(_FIELDS)


def specs(ident: str) -> st.SearchStrategy[Spec]:
    broken = st.sampled_from([False] * 9 + [True])
    return st.builds(Spec, ident=st.just(ident), broken=broken, **_FIELDS)


@st.composite
def next_file(draw: st.DrawFn, ident: str, current: Spec | None) -> Spec | None:
    """The next version of one file: mostly small changes, sometimes a delete or a new file."""
    action = draw(st.sampled_from(["change", "keep", "change", "change", "delete", "new"]))
    if current is None:
        return draw(specs(ident)) if action in ("change", "new") else None
    if action == "new":
        return draw(specs(ident))
    if action in ("keep", "delete"):
        return current if action == "keep" else None
    changed = draw(st.lists(st.sampled_from(_CHANGED), min_size=1, max_size=2, unique=True))
    spec = replace(current, broken=False)
    for key in changed:
        spec = replace(spec, **{key: draw(_FIELDS[key])})
    return spec


@dataclass(frozen=True)
class History:
    """What the runner holds before the first step (any valid versions: a base commit
    holds whatever it holds), then the steps."""

    start: Step
    steps: list[Step]

    def __str__(self) -> str:
        lines = []
        for number, step in enumerate([self.start, *self.steps]):
            judged = f"judged at {step.now:%Y-%m-%d}" if number else "held at the start"
            lines.append(f"step {number} (template {step.template!r}, {judged}):")
            lines += [f"  {ident}: {step.files.get(ident)}" for ident in IDS]
        return "\n".join(lines)


@st.composite
def histories(draw: st.DrawFn, max_steps: int = 10, moving_clock: bool = True) -> History:
    """Steps of two files and a template; the judging instant never goes back."""
    steps: list[Step] = []
    files = {ident: draw(st.none() | specs(ident).filter(Spec.valid)) for ident in IDS}
    template = draw(st.sampled_from(TEMPLATE_TEXTS))
    start = Step(dict(files), template, NOW)
    clock = 0
    for _ in range(draw(st.integers(1, max_steps))):
        files = {ident: draw(next_file(ident, files[ident])) for ident in IDS}
        template = draw(st.sampled_from([template, template, *TEMPLATE_TEXTS]))
        if moving_clock:
            clock = draw(st.integers(clock, len(CLOCK) - 1))
        steps.append(Step(dict(files), template, CLOCK[clock] if moving_clock else NOW))
    return History(start, steps)


def note_rules(verdicts: Mapping[str, str | None]) -> None:
    """Count the rules the model applied (shown by --hypothesis-show-statistics)."""
    for verdict in verdicts.values():
        event(f"refused: {verdict}" if verdict else "allowed")


# --- the product, step by step ------------------------------------------------------------


@dataclass
class Product:
    """The runner's side: `check_step` against the last accepted versions, carried forward as
    the runner does (a refused or invalid version leaves the accepted one in place)."""

    accepted: dict[str, Version]
    retired: set[str]

    @classmethod
    def holding(cls, start: Step) -> Product:
        """The product holding the files of `start` as accepted."""
        held = {i: version_of(spec, start.template) for i, spec in start.files.items() if spec}
        return cls({i: version for i, version in held.items() if version is not None}, set())

    def apply(self, step: Step) -> dict[str, bool]:
        """Judge one step: per id with a file or an accepted version, whether it is refused."""
        children = dict(self.accepted)
        refused: dict[str, bool] = {}
        for ident in IDS:
            spec = step.files.get(ident)
            if spec is None:
                children.pop(ident, None)
                continue
            version = version_of(spec, step.template)
            if version is None:
                refused[ident] = True
            else:
                children[ident] = version
        changes = lifecycle.check_step(self.accepted, children, step.now, retired_ids=self.retired)
        for change in changes:
            if change.id in refused:
                continue
            refused[change.id] = change.blocked
            if change.blocked:
                continue
            if change.kind == "deleted":
                del self.accepted[change.id]
                self.retired.add(change.id)
            else:
                self.accepted[change.id] = children[change.id]
        return refused


def held_by_model(model: Model) -> dict[str, tuple[object, ...]]:
    return {
        ident: (spec.status, spec.start_at, spec.stop_at, spec.name, spec.definition(template))
        for ident, (spec, template) in model.accepted.items()
    }


def held_by_product(product: Product) -> dict[str, tuple[object, ...]]:
    held: dict[str, tuple[object, ...]] = {}
    for ident, version in product.accepted.items():
        model = version.model
        body = str(version.definition["email"]["html"])
        held[ident] = (model.status.value, model.start_at, model.stop_at, model.name)
        held[ident] += ((body, model.wait),)
    return held


@examples(quick=300, long=6000)
@given(histories())
def test_check_step_agrees_with_the_model(history: History) -> None:
    model = Model.holding(history.start)
    product = Product.holding(history.start)
    assert held_by_product(product) == held_by_model(model)
    for number, step in enumerate(history.steps, 1):
        expected = model.apply(step)
        note_rules(expected)
        refused = {ident: verdict is not None for ident, verdict in expected.items()}
        assert product.apply(step) == refused, f"step {number}: {expected} of\n{history}"
        assert held_by_product(product) == held_by_model(model), f"after step {number}"


# --- the product, through the history walk on a real repository ---------------------------


def commit_history(repo: GitRepo, history: History) -> list[str]:
    """Commit the start (the base) and every step; the shas, the base's first."""
    shas: list[str] = []
    for number, step in enumerate([history.start, *history.steps]):
        for path in repo.path.glob("automations/**/*.yaml"):
            path.unlink()
        repo.write("templates/body.html", step.template)
        for spec in step.files.values():
            if spec is not None:
                repo.write(path_of(spec), yaml_of(spec))
        shas.append(repo.commit(f"step {number}"))
    return shas


@examples(quick=15, long=400)
@given(histories(max_steps=8, moving_clock=False))
def test_the_history_walk_agrees_with_the_model(history: History) -> None:
    # `validate --base` judges every commit at one instant; the walk lists a refused change
    # as a blocked change, while an invalid file is a finding of that file (the accepted
    # version stays without a change).
    model = Model.holding(history.start)
    expected = [model.apply(step) for step in history.steps]
    with tempfile.TemporaryDirectory() as folder:
        repo = GitRepo(Path(folder) / "repo")
        base, *shas = commit_history(repo, history)
        result = walk_history(repo.path, base, NOW)
    blocked = {sha: {c.id for c in changes if c.blocked} for sha, changes in result.steps}
    for number, (sha, verdicts) in enumerate(zip(shas, expected, strict=True), 1):
        refused = {i for i, rule in verdicts.items() if rule not in (None, "invalid file")}
        assert blocked.get(sha, set()) == refused, f"step {number}: {verdicts} of\n{history}"


@examples(quick=10, long=300)
@given(histories(max_steps=6, moving_clock=False))
def test_the_branch_fails_exactly_when_the_runner_ends_refusing(history: History) -> None:
    # Judged as the runner applies it: the branch fails when the last step still refuses an
    # automation; every refusal before that which the branch repairs is only a warning.
    model = Model.holding(history.start)
    verdicts = [model.apply(step) for step in history.steps]
    refusing_at_head = any(rule is not None for rule in verdicts[-1].values())
    with tempfile.TemporaryDirectory() as folder:
        repo = GitRepo(Path(folder) / "repo")
        base, *_ = commit_history(repo, history)
        found = walk_history(repo.path, base, NOW).findings
    errors = [f for f in found if f.severity.value == "error"]
    assert bool(errors) == refusing_at_head, f"{verdicts} {errors} of\n{history}"
    refused_before = any(rule is not None for step in verdicts[:-1] for rule in step.values())
    if not refused_before:
        assert not [f for f in found if f.rule == "refused-then-repaired"]


# --- refusals a later commit repairs ------------------------------------------------------


def test_a_refusal_that_a_later_commit_repairs_is_a_warning(tmp_path: Path) -> None:
    running = Spec("a", "running")
    edited = replace(running, body="inline B")
    history = History(
        Step({"a": running}, "A"),
        [Step({"a": edited}, "A"), Step({"a": replace(edited, status="paused")}, "A")],
    )
    model = Model.holding(history.start)
    verdicts = [model.apply(step) for step in history.steps]
    assert verdicts == [{"a": "edit running -> running"}, {"a": None}]
    assert held_by_model(model)["a"][0] == "paused"  # the runner ends where HEAD is
    repo = GitRepo(tmp_path / "repo")
    base, *_ = commit_history(repo, history)
    found = walk_history(repo.path, base, NOW).findings
    assert [(f.rule, f.severity.value) for f in found] == [("refused-then-repaired", "warning")]
