"""The desired state: what the automation files of one repository state ask for, as the apply
step reads it. Checking produces it (`checking.tree.Tree`); the engine applies it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from runner.core.findings import Finding
from runner.core.version import Version


class DesiredState(Protocol):
    """The checked automation files of one snapshot."""

    @property
    def versions(self) -> Mapping[str, Version]:
        """The valid version of each automation id."""
        ...

    def invalid_files(self) -> dict[str, tuple[Finding, ...]]:
        """Automation id (the file stem when it does not load) -> the errors refusing its file."""
        ...

    def read(self, path: str) -> bytes | None:
        """The bytes of a checked file (None when it is gone)."""
        ...
