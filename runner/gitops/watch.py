"""The file watcher of `postwright serve` (README.md "Following the repository"): changes under
`automations/`, in the folders of referenced templates and to the checkout's Git HEAD become
reloads.

Changes are grouped by watchfiles (`awatch`) with an explicit short debounce (its default,
1.6 s, is far too slow) and handed to the reloader as repository-relative paths. The watcher
never acts on a file itself: a half-written file is just a version the reloader refuses, and
the next save applies. Nothing here stops the server: a failed reload or watcher is logged and
retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from watchfiles import Change, DefaultFilter, awatch

from runner.core.layout import AUTOMATIONS_DIR
from runner.core.settings import Settings
from runner.core.version import template_paths
from runner.engine.catalog import DELETED, Catalog
from runner.gitops.reload import Reloading
from runner.repo.worktree import find_git_dir

log = logging.getLogger("postwright.watch")

MAX_DEBOUNCE_MS = 100  # a saved change is seen within 100 ms at most
POLL_DELAY_MS = 100
STEP_MS = 10  # how often the Rust side looks for more changes while grouping them
# How long a wait without changes lasts: it bounds how soon the watches are known to be in
# place (readiness), at the cost of a quiet wake-up this often.
TIMEOUT_MS = 100
ROOTS_CHECK_SECONDS = 1.0  # how often, without changes, the watched folders are looked at anew
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
            changes = awatch(
                *roots,
                watch_filter=keep,
                debounce=debounce_ms,
                step=max(1, min(debounce_ms, STEP_MS)),
                stop_event=stop,
                rust_timeout=TIMEOUT_MS,
                yield_on_timeout=True,  # the first answer tells that the watches are in place
                debug=False,
                force_polling=poll,
                poll_delay_ms=POLL_DELAY_MS,
                recursive=True,
                ignore_permission_denied=False,
            )
            async with contextlib.aclosing(changes):
                settle = 2 * POLL_DELAY_MS / 1000 if poll else 0.0
                start = Start(ready, settle, catch_up=not first or poll)
                await _follow(changes, reloader, repo, roots, keep, catalog, start)
            first = False
        except Exception:
            log.exception("the file watcher failed; restarting it")
            await _pause(stop)


async def _follow(
    changes: AsyncIterator[set[tuple[Change, str]]],
    reloader: Reloading,
    repo: Path,
    roots: list[Path],
    keep: WatchFilter,
    catalog: CatalogSource | None,
    start: Start,
) -> None:
    """Reload per group of changes until stopped, or until the folders worth watching changed.

    The first answer of `changes` (a group, or an empty set when a wait timed out) comes once
    the watches are in place: from then on no save is missed, so `start` runs then.
    """
    # Taken before the watches are put on: a folder replaced in between differs, and is
    # watched anew (taken after, the replacement could go unnoticed).
    watched = identities(roots)
    started = False
    checked_at = time.monotonic()
    async for batch in changes:
        if not started:
            started = True
            await start.run(reloader)
        if batch:
            await reload_paths(reloader, changed_paths(repo, keep.git_dir, batch))
        elif time.monotonic() - checked_at < ROOTS_CHECK_SECONDS:
            continue
        checked_at = time.monotonic()
        now_roots, keep.template_folders = await watched_roots(repo, keep.git_dir, catalog)
        if identities(now_roots) != watched:
            # A template folder appeared or went, or a folder was replaced (a watch follows
            # the folder it was put on, not its name): watch anew.
            return


@dataclass(frozen=True)
class Start:
    """What follows once the watches are in place."""

    ready: asyncio.Event | None  # set: a save from now on is seen
    settle: float  # seconds to wait first (the poller takes its first look some time later)
    catch_up: bool  # reload everything: changes made while watches were replaced were not seen

    async def run(self, reloader: Reloading) -> None:
        """Signal readiness, then catch up on what the watches may have missed."""
        if self.ready is not None:
            self.ready.set()
        if self.settle:
            await asyncio.sleep(self.settle)
        if self.catch_up:
            await reload_paths(reloader, None)


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
