"""Checking one repository state: every automation file, its templates, the
configuration and the cross-file rules (SPEC 1, 2.3, 5.3).

`TreeChecker` caches the per-file work by content id, so checking fifty
commits of a history costs one full check plus the files that changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from runner import findings, semantics, templates
from runner.config import Config
from runner.findings import Finding
from runner.loader import Loaded, load_automation, load_config
from runner.model import Automation
from runner.snapshot import Snapshot
from runner.version import Version, template_paths

AUTOMATIONS_DIR = "automations/"
CONFIG_PATH = "postwright.yaml"


def is_automation_path(path: str) -> bool:
    """Whether `path` is loaded as an automation file."""
    return path.startswith(AUTOMATIONS_DIR) and path.endswith(".yaml")


@dataclass
class Tree:
    """The result of checking one snapshot."""

    snapshot: Snapshot
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


class TreeChecker:
    """Checks snapshots; reuse one instance across the snapshots of a history."""

    def __init__(self) -> None:
        self._automations: dict[tuple[str, str], Loaded[Automation]] = {}
        self._file_checks: dict[
            tuple[str, str, tuple[str | None, ...]], tuple[Version | None, tuple[Finding, ...]]
        ] = {}
        self._configs: dict[str, Loaded[Config]] = {}

    def check(self, snapshot: Snapshot, now: datetime) -> Tree:
        """Every finding of the snapshot that needs no parent version."""
        tree = Tree(snapshot)
        self._check_config(snapshot, tree)
        for path in sorted(snapshot.paths()):
            if not path.startswith(AUTOMATIONS_DIR):
                continue
            if path.endswith(".yml"):
                tree.findings.append(
                    findings.make(
                        "wrong-extension", path, "`.yml` files are not loaded; use `.yaml`"
                    )
                )
            elif path.endswith(".yaml"):
                self._check_file(snapshot, path, tree)
        tree.findings.extend(
            semantics.cross_file_findings(tree.loaded, tree.versions, tree.config, now)
        )
        tree.findings = _unique(tree.findings)
        return tree

    def _check_config(self, snapshot: Snapshot, tree: Tree) -> None:
        blob = snapshot.blob_id(CONFIG_PATH)
        if blob is None:
            return
        loaded = self._configs.get(blob)
        if loaded is None:
            loaded = load_config(CONFIG_PATH, snapshot.read(CONFIG_PATH) or b"")
            self._configs[blob] = loaded
        tree.findings.extend(loaded.findings)
        if loaded.model is not None:
            tree.config = loaded.model

    def _check_file(self, snapshot: Snapshot, path: str, tree: Tree) -> None:
        blob = snapshot.blob_id(path)
        assert blob is not None
        loaded = self._automations.get((path, blob))
        if loaded is None:
            loaded = load_automation(path, snapshot.read(path) or b"")
            self._automations[(path, blob)] = loaded
        tree.loaded[path] = loaded
        tree.findings.extend(loaded.findings)
        if loaded.model is None:
            return
        named = template_paths(path, loaded.model)
        for repo_path in named.values():
            if repo_path is not None:
                tree.template_users.setdefault(repo_path, set()).add(path)
        key = (path, blob, tuple(snapshot.blob_id(p) if p else None for p in named.values()))
        cached = self._file_checks.get(key)
        if cached is None:
            cached = self._check_templates(snapshot, loaded, named)
            self._file_checks[key] = cached
        version, found = cached
        tree.findings.extend(found)
        if version is not None and version.id not in tree.versions:
            tree.versions[version.id] = version

    def _check_templates(
        self, snapshot: Snapshot, loaded: Loaded[Automation], named: dict[str, str | None]
    ) -> tuple[Version | None, tuple[Finding, ...]]:
        texts: dict[str, str | None] = {}
        for key, repo_path in named.items():
            content = snapshot.read(repo_path) if repo_path is not None else None
            texts[key] = content.decode("utf-8", "replace") if content is not None else None
        found = templates.template_findings(loaded, named, texts)
        if any(f.severity == "error" for f in found):
            return None, tuple(found)
        present = {key: text for key, text in texts.items() if text is not None}
        return Version.of(loaded, present), tuple(found)


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
