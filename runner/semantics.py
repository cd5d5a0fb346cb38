"""Cross-file rules over one repository state (SPEC 2.3); pure.

STUB: filled in by the semantics work package.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from runner.config import Config
from runner.findings import Finding
from runner.loader import Loaded
from runner.model import Automation
from runner.version import Version


def cross_file_findings(
    loaded: Mapping[str, Loaded[Automation]],
    versions: Mapping[str, Version],
    config: Config,
    now: datetime,
) -> list[Finding]:
    """Findings that need more than one file: ids, references, cycles, warnings."""
    return []
