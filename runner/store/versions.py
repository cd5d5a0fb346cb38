"""Schema versions shared by both stores: the migration files this release carries, and the
refusal to run on a database that a newer release has migrated past them."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from runner.store.errors import StoreError


class SchemaTooNew(StoreError):
    """The database records migrations this release does not have (a newer one wrote it)."""


def migration_files(directory: Path) -> dict[int, Path]:
    """The migration scripts of a folder by version (files named `NNNN_name.sql`)."""
    return {
        int(path.name[:4]): path for path in sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    }


def refuse_unknown(recorded: Collection[int], known: Collection[int], where: str) -> None:
    """Raise SchemaTooNew when `recorded` holds a version missing from `known`.

    Running old code on a newer schema could write rows the newer code misreads, so the
    runner stops before touching anything (it never migrates down).
    """
    unknown = sorted(set(recorded) - set(known))
    if not unknown:
        return
    names = ", ".join(f"{version:04d}" for version in unknown)
    raise SchemaTooNew(
        f"{where} was migrated by a newer Postwright (schema version {names} is unknown to "
        f"this one, which knows up to {max(known, default=0):04d}): run that newer version, "
        "or restore a backup taken before the upgrade"
    )
