"""Checking one repository state: every automation file, its templates, the
configuration and the cross-file rules (docs/rules.md).

`TreeChecker` caches the per-file work by content id, and `check` can start
from the tree of a parent snapshot and the paths that changed since, so
checking fifty commits of a history costs one full check plus the files that
changed.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from runner.checking import semantics
from runner.core import findings
from runner.core.addresses import address_findings
from runner.core.config import Config
from runner.core.findings import Finding, Severity
from runner.core.layout import AUTOMATIONS_DIR, CONFIG_PATH
from runner.core.loader import Loaded, load_automation, load_config
from runner.core.model import Automation
from runner.core.version import Version, template_paths
from runner.repo.snapshot import Snapshot, working_files
from runner.templating.checks import template_findings

log = logging.getLogger("postwright.check")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class FileResult:
    """What checking one automation file found, without the cross-file rules."""

    loaded: Loaded[Automation]
    version: Version | None
    findings: tuple[Finding, ...]
    templates: tuple[str, ...]  # repository paths of the template files it reads


@dataclass
class Tree:
    """The result of checking one snapshot."""

    snapshot: Snapshot
    files: dict[str, FileResult] = field(default_factory=dict)
    versions: dict[str, Version] = field(default_factory=dict)
    loaded: dict[str, Loaded[Automation]] = field(default_factory=dict)
    config: Config = field(default_factory=Config)
    findings: list[Finding] = field(default_factory=list)
    # Template paths each automation file reads: a change to one of them is a
    # change of that automation.
    template_users: dict[str, set[str]] = field(default_factory=dict)

    def version_at(self, path: str) -> Version | None:
        """The valid version read from `path`, if any."""
        loaded = self.loaded.get(path)
        if loaded is None or loaded.model is None:
            return None
        version = self.versions.get(loaded.model.id)
        return version if version is not None and version.path == path else None

    def invalid_files(self) -> dict[str, tuple[Finding, ...]]:
        """Automation id (the file stem when it does not load) -> the errors refusing its file."""
        errors: dict[str, list[Finding]] = {}
        for finding in self.findings:
            if finding.severity is Severity.ERROR:
                errors.setdefault(finding.path, []).append(finding)
        invalid: dict[str, tuple[Finding, ...]] = {}
        for path, result in self.files.items():
            model = result.loaded.model
            ident = model.id if model is not None else posixpath.basename(path)[: -len(".yaml")]
            if result.version is None or path in errors:
                found = errors.get(path) or [
                    f for f in result.findings if f.severity is Severity.ERROR
                ]
                invalid[ident] = (*invalid.get(ident, ()), *found)
        return invalid

    def read(self, path: str) -> bytes | None:
        """The bytes of a file of the checked snapshot."""
        return self.snapshot.read(path)


_FileKey = tuple[str, str, tuple[str | None, ...]]


class TreeChecker:
    """Checks snapshots; reuse one instance across the snapshots of a history."""

    def __init__(self) -> None:
        self._automations: dict[tuple[str, str], Loaded[Automation]] = {}
        self._file_checks: dict[_FileKey, tuple[Version | None, tuple[Finding, ...]]] = {}
        self._configs: dict[str, Loaded[Config]] = {}

    def retain(self, *trees: Tree | None) -> None:
        """Forget the per-file results of versions that none of `trees` holds.

        A long-running reloader sees a new version at every save; without this its
        caches would keep every version it ever checked.
        """
        keep: set[tuple[str, str | None]] = set()
        configs: set[str | None] = set()
        for tree in trees:
            if tree is not None:
                keep.update((path, tree.snapshot.blob_id(path)) for path in tree.files)
                configs.add(tree.snapshot.blob_id(CONFIG_PATH))
        self._automations = {key: v for key, v in self._automations.items() if key in keep}
        self._file_checks = {
            key: v for key, v in self._file_checks.items() if (key[0], key[1]) in keep
        }
        self._configs = {key: v for key, v in self._configs.items() if key in configs}

    def check(
        self,
        snapshot: Snapshot,
        now: datetime,
        *,
        previous: Tree | None = None,
        changed: Collection[str] | None = None,
    ) -> Tree:
        """Every finding of the snapshot that needs no parent version.

        With `previous` (the tree of an earlier snapshot) and `changed` (every
        path that differs from it), only the changed files and the automations
        reading a changed template are checked again.
        """
        tree = Tree(snapshot)
        self._check_config(snapshot, tree)
        if previous is not None and changed is not None:
            paths = self._changed_paths(previous, changed)
            tree.files = {p: r for p, r in previous.files.items() if p not in paths}
            wrong = [
                f for f in previous.findings if f.rule == "wrong-extension" and f.path not in paths
            ]
            candidates = set(paths)
        else:
            wrong, candidates = [], set(snapshot.paths())
        for path in candidates:
            if not path.startswith(AUTOMATIONS_DIR) or snapshot.blob_id(path) is None:
                continue  # not an automation, or gone (a dangling symlink, a file just deleted)
            if path.endswith(".yml"):
                message = "`.yml` files are not loaded; use `.yaml`"
                wrong.append(findings.make("wrong-extension", path, message))
            elif path.endswith(".yaml"):
                tree.files[path] = self._check_file(snapshot, path)
        tree.findings.extend(sorted(wrong, key=lambda f: f.path))
        self._collect(tree)
        tree.findings.extend(
            semantics.cross_file_findings(tree.loaded, tree.versions, tree.config, now)
        )
        tree.findings = _unique(tree.findings)
        return tree

    @staticmethod
    def _changed_paths(previous: Tree, changed: Collection[str]) -> set[str]:
        paths = set(changed)
        for path in changed:
            paths |= previous.template_users.get(path, set())
        return paths

    def _check_config(self, snapshot: Snapshot, tree: Tree) -> None:
        blob = snapshot.blob_id(CONFIG_PATH)
        if blob is None:
            return
        loaded = self._configs.get(blob)
        if loaded is None:
            loaded = _load(snapshot, CONFIG_PATH, load_config)
            self._configs[blob] = loaded
        tree.findings.extend(loaded.findings)
        if loaded.model is not None:
            tree.config = loaded.model

    @staticmethod
    def _collect(tree: Tree) -> None:
        """Fill the tree's indexes from its per-file results, in path order."""
        for path in sorted(tree.files):
            result = tree.files[path]
            tree.loaded[path] = result.loaded
            tree.findings.extend(result.findings)
            for template in result.templates:
                tree.template_users.setdefault(template, set()).add(path)
            version = result.version
            if version is not None and version.id not in tree.versions:
                tree.versions[version.id] = version

    def _check_file(self, snapshot: Snapshot, path: str) -> FileResult:
        blob = snapshot.blob_id(path)
        assert blob is not None
        loaded = self._automations.get((path, blob))
        if loaded is None:
            loaded = _load(snapshot, path, load_automation)
            self._automations[(path, blob)] = loaded
        # An invalid file is still checked wherever it parsed (its salvaged model).
        model = loaded.model or loaded.partial
        if model is None:
            return FileResult(loaded, None, loaded.findings, ())
        named = template_paths(path, model)
        key = (path, blob, tuple(snapshot.blob_id(p) if p else None for p in named.values()))
        cached = self._file_checks.get(key)
        if cached is None:
            try:
                cached = self._check_templates(snapshot, loaded, model, named)
            except Exception as error:  # a checker bug: a finding for this file only
                cached = (None, (*loaded.findings, _crashed(path, error, model.id)))
            self._file_checks[key] = cached
        version, found = cached
        used = tuple(p for p in named.values() if p is not None)
        return FileResult(loaded, version, found, used)

    def _check_templates(
        self,
        snapshot: Snapshot,
        loaded: Loaded[Automation],
        model: Automation,
        named: dict[str, str | None],
    ) -> tuple[Version | None, tuple[Finding, ...]]:
        texts: dict[str, str | None] = {}
        refused: dict[str, tuple[str, str]] = {}
        for key, repo_path in named.items():
            content = snapshot.read(repo_path) if repo_path is not None else None
            texts[key] = content.decode("utf-8", "replace") if content is not None else None
            why = snapshot.refusal(repo_path) if repo_path is not None else None
            if why is not None:
                refused[key] = (why.rule, why.message)
        found = [
            *loaded.findings,
            *address_findings(loaded),
            *template_findings(loaded, named, texts, refused, model=model),
        ]
        if loaded.model is None or any(f.severity == "error" for f in found):
            return None, tuple(found)
        present = {key: text for key, text in texts.items() if text is not None}
        return Version.of(loaded, present), tuple(found)


def _load(snapshot: Snapshot, path: str, load: Callable[[str, bytes], Loaded[M]]) -> Loaded[M]:
    """Read `path` through `load`; a refused file, or a crash of the loader, is its finding."""
    content = snapshot.read(path)
    refused = snapshot.refusal(path) if content is None else None
    if refused is not None:
        finding = findings.make(refused.rule, path, refused.message)
        return Loaded(path, None, (finding,), None)
    try:
        return load(path, content or b"")
    except Exception as error:  # a checker bug: a finding for this file only
        return Loaded(path, None, (_crashed(path, error),), None)


def _crashed(path: str, error: Exception, automation: str | None = None) -> Finding:
    # The traceback is for developers; the finding tells the user which file it is.
    log.debug("checking %s failed", path, exc_info=error)
    message = f"checking this file failed: {type(error).__name__}: {error}"
    return findings.make("check-crashed", path, message, automation=automation)


def _unique(found: list[Finding]) -> list[Finding]:
    """Findings without repeats: a template file shared by several automations is
    checked once per automation but reported once."""
    seen: set[tuple[str, int, int, str, str]] = set()
    unique: list[Finding] = []
    for finding in found:
        key = (finding.path, finding.line, finding.col, finding.rule, finding.message)
        if key not in seen:
            seen.add(key)
            unique.append(finding)
    return unique


def check_working_tree(root: Path, now: datetime) -> Tree:
    """The files on disk checked without history."""
    return TreeChecker().check(working_files(root), now)
