"""The worker's catalog after a reload: callers asking at once share one rebuild
(README.md "Following the repository")."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from runner.engine import worker as worker_module
from tests.test_reload import Runner, path, scenario, text


def test_callers_asking_at_once_after_a_reload_share_one_rebuild(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[int] = []
    real_build = worker_module._build

    def counting(tx: Any, previous: Any) -> Any:
        builds.append(1)
        return real_build(tx, previous)

    async def body(runner: Runner) -> None:
        reloader = await runner.start()
        assert (await reloader.reload()).result == "applied"
        assert runner.worker is not None
        before = await runner.worker.catalog()
        # A pause may come with an edit (a running automation's email may not change).
        runner.repo.write(path("welcome"), text("welcome", "paused", subject="New"))
        assert (await reloader.reload([path("welcome")])).result == "applied"
        monkeypatch.setattr(worker_module, "_build", counting)
        # The engine round, the send round and the watcher ask together after a reload.
        catalogs = await asyncio.gather(*(runner.worker.catalog() for _ in range(3)))
        assert len(builds) == 1
        assert all(catalog is catalogs[0] for catalog in catalogs)
        assert catalogs[0] is not before
        assert catalogs[0].by_id["welcome"].model.email.subject == "New"
        # Nothing changed since: no rebuild.
        assert await runner.worker.catalog() is catalogs[0]
        assert len(builds) == 1

    scenario(tmp_path, {"welcome": text("welcome")}, body)
