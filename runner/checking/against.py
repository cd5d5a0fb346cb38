"""`--against URL`: the state a running Postwright has applied, fetched over its API, and the
working tree checked against it (docs/output-formats.md), so CI judges a change by what is
really deployed.

`RunnerClient` (runner_client.py) speaks HTTP; `fetch_deployed` rebuilds the applied versions
from the `applied` object of `GET /v1/automations/{id}`; `check_against` runs the change rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from runner.checking.plan import Impact
from runner.checking.runner_client import PAGE, RunnerClient, RunnerUnavailable
from runner.checking.tree import Tree, check_working_tree
from runner.core import lifecycle
from runner.core.findings import Finding
from runner.core.layout import is_automation_path
from runner.core.lifecycle import Change
from runner.core.loader import load_automation
from runner.core.model import Status
from runner.core.version import Version

DELETED = "deleted"
PAUSE_HORIZON = timedelta(hours=24)


@dataclass(frozen=True)
class Deployed:
    """What the runner at `url` has applied: valid versions by id and the retired ids."""

    url: str
    versions: dict[str, Version] = field(default_factory=dict)
    retired: frozenset[str] = frozenset()


@dataclass(frozen=True)
class AgainstResult:
    """The working tree checked against the deployed state."""

    tree: Tree
    children: dict[str, Version]
    changes: list[Change]
    findings: list[Finding]


def fetch_deployed(client: RunnerClient) -> Deployed:
    """Every automation the runner has applied, rebuilt as lifecycle Versions.

    Deleted automations only retire their ids; the others are rebuilt from the
    `applied` source and template texts the runner reports, exactly as it stored them.
    """
    versions: dict[str, Version] = {}
    retired: set[str] = set()
    for summary in client.automations():
        ident = summary["id"]
        if _status(summary) == DELETED:
            retired.add(ident)
            continue
        detail = client.automation(ident)
        if _status(detail) == DELETED:
            retired.add(ident)
            continue
        versions[ident] = applied_version(client.url, ident, detail)
    return Deployed(client.url, versions, frozenset(retired))


def _status(payload: Mapping[str, Any]) -> str | None:
    """The runner's own status (effective), not the one a refused file asks for."""
    value = payload.get("effective_status", payload.get("status"))
    return value if isinstance(value, str) else None


def applied_version(url: str, ident: str, detail: Mapping[str, Any]) -> Version:
    """The Version of one automation from its `applied` {source, templates, path} object."""
    applied = detail.get("applied")
    where = f"{url}/v1/automations/{ident}"
    if not isinstance(applied, dict):
        raise RunnerUnavailable(
            f"{where} does not report the applied version (`applied`): "
            "the runner is older than this CLI; upgrade it"
        )
    source, path = applied.get("source"), applied.get("path")
    templates = applied.get("templates") or {}
    if not isinstance(source, str) or not isinstance(path, str) or not isinstance(templates, dict):
        raise RunnerUnavailable(f"{where}: `applied` lacks its source, path or templates")
    loaded = load_automation(path, source.encode("utf-8"))
    if loaded.model is None:
        problems = "; ".join(f.message for f in loaded.findings[:3])
        raise RunnerUnavailable(f"{where}: the applied source does not validate here: {problems}")
    if loaded.model.id != ident:
        raise RunnerUnavailable(f"{where}: the applied source has id {loaded.model.id!r}")
    return Version.of(loaded, {str(k): str(v) for k, v in templates.items()})


def children_of(tree: Tree, parents: Mapping[str, Version]) -> dict[str, Version]:
    """The tree's valid versions; an id whose file is present but invalid keeps its parent's
    (the runner refuses an invalid file and keeps the applied version live)."""
    children = dict(tree.versions)
    for path, loaded in tree.loaded.items():
        if loaded.model is not None:
            ident = loaded.model.id
        elif is_automation_path(path):
            ident = PurePosixPath(path).stem
        else:
            continue
        if ident not in children and ident in parents:
            children[ident] = parents[ident]
    return children


def check_against(root: Path, deployed: Deployed, now: datetime) -> AgainstResult:
    """The working tree's findings plus the change rules from the deployed versions."""
    tree = check_working_tree(root, now)
    children = children_of(tree, deployed.versions)
    changes = lifecycle.check_step(deployed.versions, children, now, retired_ids=deployed.retired)
    found = _unique([*tree.findings, *(f for c in changes for f in c.findings)])
    return AgainstResult(tree, children, changes, [f.at_commit(None) for f in found])


def _unique(found: Iterable[Finding]) -> list[Finding]:
    seen: set[tuple[str, str, str, int]] = set()
    unique: list[Finding] = []
    for finding in found:
        key = (finding.path, finding.rule, finding.message, finding.line)
        if key not in seen:
            seen.add(key)
            unique.append(finding)
    return unique


def impact_of(change: Change, client: RunnerClient, now: datetime) -> Impact | None:
    """The runtime impact of one change, read from the runner's pending sends.

    A stop or a delete cancels every pending send at once (a request already
    with the provider completes); a pause lets the sends due within 24 h fall if
    it outlasts them (retries skip the pause check). A blocked change
    is refused by the runner and does nothing.
    """
    if change.blocked or change.old_status in (None, Status.STOPPED):
        return None
    stops = change.kind == "deleted" or (change.transition and change.new_status is Status.STOPPED)
    pauses = change.transition and change.new_status is Status.PAUSED
    if not stops and not pauses:
        return None
    sends = client.pending(change.id)
    truncated = len(sends) >= PAGE
    if stops:
        return Impact("cancels_now", len(sends), truncated)
    horizon = now + PAUSE_HORIZON
    due = [s for s in sends if not s.get("attempts") and _due_before(s, horizon)]
    # Sends come by due time: a full page whose last send is still due counts as a lower bound.
    return Impact("due_within_24h", len(due), truncated and len(due) == len(sends))


def _due_before(send: Mapping[str, Any], horizon: datetime) -> bool:
    text = send.get("due_at")
    if not isinstance(text, str):
        return False
    try:
        due = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return due <= horizon
