"""A checked snapshot with some files replaced: the scenario's status changes as new versions
of the automation files, applied like a reload."""

from __future__ import annotations

from collections.abc import Iterable

from runner.repo.files import Refused
from runner.repo.snapshot import Snapshot, git_blob_id


class EditedSnapshot:
    """The checked snapshot with some files replaced (status changes of the scenario)."""

    def __init__(self, base: Snapshot, edits: dict[str, bytes]) -> None:
        self.base, self.edits = base, dict(edits)

    @property
    def commit(self) -> str | None:
        """Never a commit: a state of the simulation."""
        return None

    def paths(self) -> Iterable[str]:
        """The base's paths (edits only replace files)."""
        return self.base.paths()

    def blob_id(self, path: str) -> str | None:
        """The edited content's id, else the base's."""
        edited = self.edits.get(path)
        return git_blob_id(edited) if edited is not None else self.base.blob_id(path)

    def read(self, path: str) -> bytes | None:
        """The edited content, else the base's."""
        edited = self.edits.get(path)
        return edited if edited is not None else self.base.read(path)

    def refusal(self, path: str) -> Refused | None:
        """The base's refusal; an edited file is always read."""
        return None if path in self.edits else self.base.refusal(path)
