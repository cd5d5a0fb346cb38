"""The file watcher of `postwright serve` (README.md "Following the repository"): changes under
`automations/`, in the folders of referenced templates and to the checkout's Git HEAD become
reloads.

Changes are grouped by watchfiles with an explicit short debounce (its default, 1.6 s, is far
too slow) and handed to the reloader as repository-relative paths. The watcher never acts on a
file itself: a half-written file is just a version the reloader refuses, and the next save
applies. Nothing here stops the server: a failed reload or watcher is logged and retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path

from watchfiles import Change, DefaultFilter
from watchfiles._rust_notify import RustNotify

from runner.core.layout import AUTOMATIONS_DIR
from runner.core.settings import Settings
from runner.core.version import template_paths
from runner.engine.catalog import DELETED, Catalog
from runner.gitops.reload import Reloading
from runner.repo.git import find_git_dir

log = logging.getLogger("postwright.watch")

MAX_DEBOUNCE_MS = 100  # a saved change is seen within 100 ms at most
POLL_DELAY_MS = 100
STEP_MS = 10  # how often the Rust side looks for more changes while grouping them
TIMEOUT_MS = 1000  # how often, without changes, the wait returns to look at `stop`
RETRY_SECONDS = 1.0  # after the watcher itself failed, or while there is nothing to watch
GIT_FILES = frozenset({"HEAD", "packed-refs"})
GIT_PREFIX = ".git/"

CatalogSource = Callable[[], Awaitable[Catalog]]


async def watch(
    reloader: Reloading,
    settings: Settings,
    stop: asyncio.Event,
    *,
    poll: bool = False,
    debounce_ms: int = 50,
    catalog: CatalogSource | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Reload on every group of file changes until `stop` is set.

    `catalog` (the worker's) names the applied automations, whose template folders are
    watched too; `poll` polls the files instead of waiting for notifications; `ready` is set
    once the first watches are in place (a save from then on is seen).
    """
    if not 0 < debounce_ms <= MAX_DEBOUNCE_MS:
        raise ValueError(f"debounce_ms must be from 1 to {MAX_DEBOUNCE_MS}")
    repo = settings.repo.resolve()
    git_dir = await asyncio.to_thread(find_git_dir, repo)
    keep = WatchFilter(repo, git_dir)
    first = True
    while not stop.is_set():
        roots, keep.template_folders = await watched_roots(repo, git_dir, catalog)
        if not roots:
            if ready is not None:
                ready.set()  # nothing to watch yet: do not hold the server back
            await _pause(stop)
            continue
        log.info("watching %s%s", ", ".join(map(str, roots)), " (polling)" if poll else "")
        try:
            # Watches are in place once RustNotify exists: from then on no save is missed.
            notify = RustNotify([str(r) for r in roots], False, poll, POLL_DELAY_MS, True, False)
            with notify:
                if ready is not None:
                    ready.set()
                if poll:
                    # The poller takes its first look at the files some time after it
                    # starts: a save in between would never differ from what it saw.
                    await asyncio.sleep(2 * POLL_DELAY_MS / 1000)
                if not first or poll:
                    # Changes made while the watches were being replaced were not seen.
                    await reload_paths(reloader, None)
                first = False
                await _watch(notify, reloader, repo, roots, keep, stop, debounce_ms, catalog)
        except Exception:
            log.exception("the file watcher failed; restarting it")
            await _pause(stop)


async def _watch(
    notify: RustNotify,
    reloader: Reloading,
    repo: Path,
    roots: list[Path],
    keep: WatchFilter,
    stop: asyncio.Event,
    debounce_ms: int,
    catalog: CatalogSource | None,
) -> None:
    """Reload per group of changes until stopped, or until the folders worth watching changed."""
    step = max(1, min(debounce_ms, STEP_MS))
    watched = identities(roots)
    while True:
        raw = await asyncio.to_thread(notify.watch, debounce_ms, step, TIMEOUT_MS, stop)
        if raw == "stop":
            return
        if not isinstance(raw, str):  # else "timeout" (a second without changes) or "signal"
            batch = {(Change(code), path) for code, path in raw if keep(Change(code), path)}
            if not batch:
                continue
            await reload_paths(reloader, changed_paths(repo, keep.git_dir, batch))
        now_roots, keep.template_folders = await watched_roots(repo, keep.git_dir, catalog)
        if identities(now_roots) != watched:
            # A template folder appeared or went, or a folder was replaced (a watch follows
            # the folder it was put on, not its name): watch anew.
            return


async def reload_paths(reloader: Reloading, paths: set[str] | None) -> None:
    """One reload for one group of changes (None: everything); a moved Git HEAD reloads
    everything too."""
    changed: Collection[str] | None = None
    if paths is not None and not any(path.startswith(GIT_PREFIX) for path in paths):
        changed = sorted(paths)
    try:
        result = await reloader.reload(changed, reason="watch")
    except Exception:
        # The applied state stays as it was; the next change retries.
        log.exception("reload failed")
        return
    log.debug("reload of %s: %s", "everything" if changed is None else changed, result.result)


def changed_paths(repo: Path, git_dir: Path | None, batch: set[tuple[Change, str]]) -> set[str]:
    """Repository-relative POSIX paths of a group of changes (`.git/<name>` for Git files)."""
    paths: set[str] = set()
    for _, raw in batch:
        path = Path(raw)
        if git_dir is not None and path.is_relative_to(git_dir):
            paths.add(GIT_PREFIX + path.relative_to(git_dir).as_posix())
        elif path.is_relative_to(repo):
            paths.add(path.relative_to(repo).as_posix())
    return paths


class WatchFilter(DefaultFilter):
    """The changes that matter: files under automations/ and in template folders (editors'
    temporary files out, as watchfiles does), and in the Git folder only HEAD, packed-refs and
    branch refs (every other Git file changes on every commit)."""

    def __init__(self, repo: Path, git_dir: Path | None) -> None:
        super().__init__()
        self.automations = repo / AUTOMATIONS_DIR.rstrip("/")
        self.git_dir = git_dir
        self.template_folders: frozenset[Path] = frozenset()

    def __call__(self, change: Change, path: str) -> bool:
        """Whether a change of `path` matters."""
        where = Path(path)
        if self.git_dir is not None and where.is_relative_to(self.git_dir):
            name = where.relative_to(self.git_dir).as_posix()
            return name in GIT_FILES or (
                name.startswith("refs/heads/") and not name.endswith(".lock")
            )
        wanted = where.is_relative_to(self.automations) or where.parent in self.template_folders
        return wanted and super().__call__(change, path)


async def watched_roots(
    repo: Path, git_dir: Path | None, catalog: CatalogSource | None
) -> tuple[list[Path], frozenset[Path]]:
    """The existing folders to watch (automations/, template folders outside it, the Git dir),
    and the template folders."""
    automations = repo / AUTOMATIONS_DIR.rstrip("/")
    templates: set[Path] = set()
    if catalog is not None:
        for live in (await catalog()).by_id.values():
            if live.row.status == DELETED:
                continue
            for path in template_paths(live.row.path, live.model).values():
                if path is not None:
                    templates.add((repo / path).parent)
    folders = {automations, *templates}
    if git_dir is not None:
        folders.add(git_dir)
    existing = sorted(folder for folder in folders if folder.is_dir())
    # A folder inside another watched one is already watched (recursively).
    roots = [f for f in existing if not any(f != o and f.is_relative_to(o) for o in existing)]
    return roots, frozenset(templates)


def identities(folders: list[Path]) -> list[tuple[Path, int, int]]:
    """Each folder with its device and inode (a vanished folder is left out)."""
    found = []
    for folder in folders:
        try:
            info = folder.stat()
        except OSError:
            continue
        found.append((folder, info.st_dev, info.st_ino))
    return found


async def _pause(stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), RETRY_SECONDS)
