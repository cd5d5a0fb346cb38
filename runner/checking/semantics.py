"""Cross-file rules over one repository state (docs/rules.md); pure.

Ids and references between files, email-trigger cycles, and the warnings that
judge each automation's effective status at one instant, `now`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from runner.checking import volume
from runner.core import findings
from runner.core.config import Config
from runner.core.findings import Finding
from runner.core.lifecycle import effective_status
from runner.core.loader import Loaded
from runner.core.model import Automation, EmailTrigger, EventTrigger, Status
from runner.core.version import Version


@dataclass(frozen=True)
class _File:
    """A valid automation file and its status judged at `now`."""

    loaded: Loaded[Automation]
    model: Automation
    effective: Status

    def finding(self, rule: str, message: str, *at: str, key: bool = False) -> Finding:
        line, col = self.loaded.position(*at, key=key)
        ident = self.model.id if self.loaded.readable("id") else None
        return findings.make(rule, self.loaded.path, message, line, col, automation=ident)


def cross_file_findings(
    loaded: Mapping[str, Loaded[Automation]],
    versions: Mapping[str, Version],
    config: Config,
    now: datetime,
) -> list[Finding]:
    """Findings that need more than one file: ids, references, cycles, warnings.

    Files that failed to load are skipped (their own findings say why), but the
    ids they declare still count as existing, so a broken source file does not
    also make every reference to it `unknown-automation`.
    """
    files = [
        _File(item, item.model, effective_status(item.model, now))
        for _, item in sorted(loaded.items())
        if item.model is not None
    ]
    by_id: dict[str, _File] = {}
    for file in files:
        by_id.setdefault(file.model.id, file)
    by_path = {file.loaded.path: file for file in files}
    for version in versions.values():  # the version the tree checker kept wins
        if version.path in by_path:
            by_id[version.id] = by_path[version.path]
    declared = set(by_id) | {
        _declared_id(path, item) for path, item in loaded.items() if item.model is None
    }
    found: list[Finding] = []
    found.extend(_id_findings(files))
    for file in files:
        found.extend(_file_findings(file, by_id, declared, config))
    found.extend(_partial_findings(loaded, files, declared, config))
    found.extend(_cycle_findings(by_id))
    collisions = list(_collision_findings(files, config))
    found.extend(collisions)
    # A pile-up `too-many-emails` already names is not named twice.
    found.extend(_volume_findings(by_id, config, now, {f.automation for f in collisions}))
    return found


def _declared_id(path: str, item: Loaded[Automation]) -> str:
    data = item.document.data if item.document is not None else None
    written = data.get("id") if isinstance(data, dict) else None
    return written if isinstance(written, str) else _stem(path)


def _stem(path: str) -> str:
    return posixpath.basename(path).removesuffix(".yaml")


def _id_findings(files: list[_File]) -> Iterator[Finding]:
    first: dict[str, str] = {}
    for file in files:
        ident, path = file.model.id, file.loaded.path
        if ident != _stem(path):
            yield file.finding(
                "id-mismatch",
                f"`id: {ident}` differs from the file name `{_stem(path)}.yaml`",
                "id",
            )
        if ident in first:
            yield file.finding(
                "id-duplicate", f"id `{ident}` is already declared in {first[ident]}", "id"
            )
        else:
            first[ident] = path


def _partial_findings(
    loaded: Mapping[str, Loaded[Automation]],
    files: list[_File],
    declared: set[str],
    config: Config,
) -> Iterator[Finding]:
    """The rules above that still apply to an invalid file, on the parts of it that parsed.

    Only rules about the file itself run (its id, name and references), and only
    on values the loader kept; they never add a finding to another, valid file.
    """
    valid_ids = {file.model.id: file.loaded.path for file in files}
    for path, item in sorted(loaded.items()):
        model = item.partial
        if item.model is not None or model is None:
            continue
        file = _File(item, model, model.status)
        if item.readable("id"):
            if model.id != _stem(path):
                yield file.finding(
                    "id-mismatch",
                    f"`id: {model.id}` differs from the file name `{_stem(path)}.yaml`",
                    "id",
                )
            if model.id in valid_ids:
                yield file.finding(
                    "id-duplicate",
                    f"id `{model.id}` is already declared in {valid_ids[model.id]}",
                    "id",
                )
        if item.readable("provider") and model.provider not in config.providers:
            yield _unknown_provider(file, config)
        trigger = model.trigger
        if (
            isinstance(trigger, EmailTrigger)
            and item.readable("trigger", "automation")
            and trigger.automation not in declared
        ):
            yield _unknown_automation(file, trigger.automation)


def _unknown_provider(file: _File, config: Config) -> Finding:
    model = file.model
    known = ", ".join(sorted(config.providers))
    written = file.loaded.document is not None and ("provider",) in file.loaded.document.values
    subject = f"provider `{model.provider}`" if written else "the default provider `default`"
    return file.finding(
        "unknown-provider",
        f"{subject} is not declared in postwright.yaml (declared: {known})",
        "provider",
    )


def _unknown_automation(file: _File, name: str) -> Finding:
    return file.finding(
        "unknown-automation", f"no automation has id `{name}`", "trigger", "automation"
    )


def _file_findings(
    file: _File, by_id: Mapping[str, _File], declared: set[str], config: Config
) -> Iterator[Finding]:
    model = file.model
    if model.provider not in config.providers:
        yield _unknown_provider(file, config)
    yield from _lifecycle_warnings(file)
    trigger = model.trigger
    if not isinstance(trigger, EmailTrigger):
        return
    source = by_id.get(trigger.automation)
    if source is None:
        if trigger.automation not in declared:
            yield _unknown_automation(file, trigger.automation)
        return
    if file.effective is Status.STOPPED:
        return  # a stopped automation's trigger never fires again anyway
    if source.effective is Status.STOPPED:
        yield file.finding(
            "source-stopped",
            f"`{trigger.automation}` has stopped, so this trigger will not fire again",
            "trigger",
            "automation",
        )
    elif source.effective is Status.RUNNING and file.effective is not Status.RUNNING:
        yield file.finding(
            "source-not-running",
            f"`{trigger.automation}` is running but this automation is {file.effective.value}: "
            "emails it sends meanwhile never count for this trigger",
            "status",
        )


def _lifecycle_warnings(file: _File) -> Iterator[Finding]:
    """start-at-passed, and stale-status for every other lag of the written status.

    A scheduled file whose `start_at` passed gets only `start-at-passed` (its help
    names both fixes); `stale-status` covers the lags `stop_at` causes.
    """
    model, effective = file.model, file.effective
    if model.status is Status.SCHEDULED and effective is not Status.SCHEDULED:
        yield file.finding(
            "start-at-passed",
            "`start_at` has passed: this automation is effectively running",
            "start_at",
        )
    if effective is not model.status and effective is not Status.RUNNING:
        yield file.finding(
            "stale-status",
            f"`status: {model.status.value}` is effectively `{effective.value}`: "
            "`stop_at` has passed",
            "status",
        )


def _cycle_findings(by_id: Mapping[str, _File]) -> Iterator[Finding]:
    """Email triggers form a functional graph (one trigger per automation): walk each chain."""
    edges = {
        ident: file.model.trigger.automation
        for ident, file in by_id.items()
        if isinstance(file.model.trigger, EmailTrigger)
    }
    visited: set[str] = set()
    for start in sorted(edges):
        chain: dict[str, int] = {}  # node -> index on this walk
        node = start
        while node in edges and node not in chain and node not in visited:
            chain[node] = len(chain)
            node = edges[node]
        visited.update(chain)
        if node not in chain:
            continue  # the walk ended, or joined a chain already walked
        cycle = list(chain)[chain[node] :]
        if all(by_id[member].model.retrigger is False for member in cycle):
            continue
        loop = " -> ".join([*cycle, cycle[0]])
        for member in cycle:
            yield by_id[member].finding(
                "email-trigger-cycle",
                f"email triggers form a cycle ({loop}) and a member may retrigger",
                "trigger",
                "automation",
            )


def _collision_findings(files: list[_File], config: Config) -> Iterator[Finding]:
    """A heuristic for one event mailing a subscriber too often (`too-many-emails`).

    Counts the effectively running automations triggered by the same event name
    (and group) with neither a `where` nor an `audience`: each of them sends to
    everyone the event names, so one event sends that many emails. More than
    `max_emails_per_day` warns on each of them. Waits, windows and `retrigger`
    are ignored: they move or thin the emails out, they do not stop the pile-up.
    """
    groups: dict[tuple[str, str | None], list[_File]] = {}
    for file in files:
        trigger, model = file.model.trigger, file.model
        if (
            isinstance(trigger, EventTrigger)
            and trigger.where is None
            and model.audience is None
            and file.effective is Status.RUNNING
        ):
            groups.setdefault((trigger.event, trigger.group), []).append(file)
    limit = config.max_emails_per_day
    for (event, group), members in sorted(groups.items(), key=lambda item: str(item[0])):
        if len(members) <= limit:
            continue
        what = f"`{event}`" + (f" (group `{group}`)" if group else "")
        for file in members:
            yield file.finding(
                "too-many-emails",
                f"{len(members)} running automations send on every {what} event, "
                f"more than max_emails_per_day ({limit})",
                "trigger",
                "event",
            )


def _volume_findings(
    by_id: Mapping[str, _File], config: Config, now: datetime, named: set[str | None]
) -> Iterator[Finding]:
    """`daily-volume` on every automation of a worst day over `max_emails_per_day`."""
    counted = {
        ident: file.model
        for ident, file in by_id.items()
        if file.effective is Status.RUNNING
        and file.model.audience is None
        and getattr(file.model.trigger, "where", None) is None
    }
    limit = config.max_emails_per_day
    for found in volume.daily_volumes(counted, now, config.timezone):
        if found.count <= limit:
            continue
        message = volume.describe(found, limit)
        members = sorted({ident for chain, _ in found.chains for ident in chain})
        if set(members) <= named:
            continue
        for ident in members:
            yield by_id[ident].finding("daily-volume", message, "trigger")
