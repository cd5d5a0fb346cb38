"""A long-running reloader's memory: saving the same files again and again keeps the same
Python objects alive, and every reload hands the C heap's free pages back
(docs/performance.md "Hot reload")."""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runner.cli.settings import load_settings
from runner.core.clock import FakeClock
from runner.core.loader import Loaded
from runner.core.model import Automation
from runner.core.version import Version
from runner.gitops import heap, reload
from runner.gitops.reload import Reloader
from runner.server.app import build_worker
from runner.store import open_store
from tests.gitrepo import GitRepo, automation

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
IDS = ("a", "b", "c")
SAVES = 30  # ten rounds over the three files


def live_objects() -> Counter[str]:
    """Live loaded files, versions and automation models, by type."""
    gc.collect()
    kinds = (Loaded, Version, Automation)
    return Counter(type(o).__name__ for o in gc.get_objects() if isinstance(o, kinds))


def saved(ident: str, n: int) -> str:
    return automation(ident, "draft", f"Subject {n}")


def test_saving_the_same_files_again_keeps_the_same_objects_alive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each file's first save may keep its HEAD version beside the saved one (bounded by
    the number of files); later saves, uncommitted or committed, replace what they saved."""
    trims: list[int] = []

    def release() -> bool:
        trims.append(1)
        return True

    monkeypatch.setattr(reload, "release_free_memory", release)
    repo = GitRepo(tmp_path / "repo")
    for ident in IDS:
        repo.write(f"automations/{ident}.yaml", automation(ident, "draft"))
    repo.commit("initial")
    environ = {"POSTWRIGHT_DATABASE_URL": f"sqlite:///{tmp_path / 'pw.db'}"}
    settings = load_settings(repo.path, environ)
    clock = FakeClock(T0)
    store = open_store(settings.database_url, clock)

    async def save(reloader: Reloader, n: int, *, commit: bool = False) -> None:
        ident = IDS[n % len(IDS)]
        repo.write(f"automations/{ident}.yaml", saved(ident, n))
        if commit:
            repo.commit(f"save {n}")
        result = await reloader.reload([f"automations/{ident}.yaml"])
        assert [(i, commit_sha) for i, _, commit_sha in result.applied] == [
            (ident, repo.head() if commit else None)
        ]

    async def main() -> tuple[Counter[str], Counter[str], Counter[str]]:
        worker = await build_worker(settings, store, clock)
        reloader = Reloader(settings, store, worker, clock)
        await reloader.reload(None, reason="startup")
        for n in range(2 * len(IDS)):  # every file saved: its HEAD version is kept beside
            await save(reloader, n)
            await worker.catalog()
        warm = live_objects()
        for n in range(2 * len(IDS), SAVES):
            await save(reloader, n)
            await worker.catalog()
        uncommitted = live_objects()
        for n in range(SAVES, 2 * SAVES):
            await save(reloader, n, commit=True)
            await worker.catalog()
        return warm, uncommitted, live_objects()

    try:
        warm, uncommitted, committed = asyncio.run(main())
    finally:
        asyncio.run(store.close())
    assert warm["Automation"] > 0
    assert uncommitted == warm
    # Committed, a file's HEAD version is its saved one again: never more than before.
    assert all(committed[kind] <= warm[kind] for kind in warm), (warm, committed)
    assert len(trims) == 1 + 2 * SAVES  # the start-up reload and every save


def test_release_free_memory_calls_malloc_trim_where_the_c_library_has_it() -> None:
    if not heap.can_release():
        pytest.skip("no malloc_trim in this C library (not glibc)")
    # Free memory in the middle of the heap: allocations of 64 KiB are below glibc's mmap
    # threshold, so they come from the heap; keeping the last one pins its top.
    blocks = [bytearray(64 * 1024) for _ in range(256)]
    del blocks[:-1]
    assert heap.release_free_memory() is True
