"""`serve --git`: follow one branch of a remote repository (docs/git-follow.md).

The follower fetches on its interval and when a webhook asks, moves the checkout to the
fetched commit and hands it to the reloader, the same one the file watcher uses: new commits
are applied one by one in history-walk order, a force-push as a jump. A failed fetch changes
nothing that is applied; it shows in `state` (read by /readyz and /metrics).

Replicas on one PostgreSQL database each follow the remote in their own data folder. Each
reads the applied commit before fetching and applies only while it is still the one read
(`Expected`): a replica whose fetch predates another's apply gets `stale`, fetches again and
finds nothing new, so every commit is applied once and never rolled back by a slow replica.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from runner.core.clock import Clock
from runner.gitops.reload import Expected
from runner.gitops.reload_state import APPLIED_COMMIT_META, ReloadResult
from runner.repo.git_remote import REASONS, FetchError, Remote, checkout_commit, fetch, redact
from runner.repo.worktree import open_repository
from runner.store.base import Store

log = logging.getLogger("postwright.git")

STALE_RETRIES = 5  # another replica applied meanwhile: fetch again (each retry is progress)
WEBHOOK_RESULTS = ("accepted", "ignored", "refused")


class ExpectingReloader(Protocol):
    """What the follower needs of `runner.gitops.reload.Reloader`."""

    async def reload(
        self,
        changed: Collection[str] | None = None,
        *,
        reason: str = "watch",
        expect: Expected | None = None,
    ) -> ReloadResult:
        """Apply the checkout while the applied commit is the expected one."""
        ...


@dataclass(frozen=True)
class Following:
    """What to follow and how often."""

    remote: Remote
    checkout: Path  # the work tree inside the data folder
    interval: float  # seconds between fetches
    webhook_secret: str | None = None


@dataclass
class GitState:
    """The follower's last fetch and apply, for /readyz and /metrics (no credentials in it)."""

    url: str  # redacted
    ref: str
    interval: float
    last_fetch_at: datetime | None = None
    last_fetch_ok: bool | None = None
    last_success_at: datetime | None = None
    last_error_reason: str | None = None  # one of REASONS
    last_error: str | None = None  # redacted
    fetched_commit: str | None = None
    applied_commit: str | None = None
    fetches: int = 0
    jumps: int = 0
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    webhooks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WEBHOOK_RESULTS, 0))

    def detail(self) -> dict[str, Any]:
        """The JSON form shown in /readyz."""
        return {
            "url": self.url,
            "ref": self.ref,
            "interval_seconds": self.interval,
            "last_fetch": None if self.last_fetch_ok is None else _iso(self.last_fetch_at),
            "last_fetch_ok": self.last_fetch_ok,
            "last_fetch_success": _iso(self.last_success_at),
            "error_reason": self.last_error_reason,
            "error": self.last_error,
            "fetched_commit": self.fetched_commit,
            "applied_commit": self.applied_commit,
        }


class GitFollower:
    """Fetches, moves the checkout and applies; one sync at a time."""

    def __init__(
        self, following: Following, reloader: ExpectingReloader, store: Store, clock: Clock
    ) -> None:
        self.following = following
        self.remote = following.remote
        self.checkout = following.checkout
        self.reloader = reloader
        self.store = store
        self.clock = clock
        self.state = GitState(redact(self.remote.url), self.remote.ref, following.interval)
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        # (fetched head, applied commit after its reload): the same pair again is nothing new,
        # and a refused change is not judged (and logged) again every interval.
        self._settled: tuple[str, str | None] | None = None
        self.last_result: ReloadResult | None = None

    def trigger(self) -> None:
        """Fetch as soon as possible (a webhook announced a push)."""
        self._wake.set()

    async def start(self) -> None:
        """The first sync, before the server answers. A failed fetch with a checkout from an
        earlier run keeps what is applied; without a checkout it is a FetchError (exit 2)."""
        had = await asyncio.to_thread(self._head)
        if await self.sync("startup"):
            return
        if had is None:
            raise FetchError(self.state.last_error_reason or "error", self.state.last_error or "")
        log.warning("fetch failed at start-up: applying the checkout of the last run (%s)", had)
        result = await self.reloader.reload(None, reason="startup", expect=Expected(had))
        if result.result == "stale":
            log.info("the store has moved on from %s: keeping the applied state", had[:7])
        self.state.applied_commit = await self._applied()

    async def run(self, stop: asyncio.Event) -> None:
        """Sync every interval and on every trigger until `stop` is set."""
        while not stop.is_set():
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            try:
                await asyncio.wait(
                    waits, timeout=self.following.interval, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiting in waits:
                    waiting.cancel()
            if stop.is_set():
                return
            why = "webhook" if self._wake.is_set() else "interval"
            self._wake.clear()
            try:
                await self.sync(why)
            except Exception:  # the loop outlives any one failure; the next round retries
                log.exception("git sync failed")

    async def sync(self, why: str) -> bool:
        """Fetch, move the checkout and apply; False when the fetch failed (nothing changed)."""
        async with self._lock:
            for _ in range(STALE_RETRIES):
                before = await self._applied()
                try:
                    head = await asyncio.to_thread(fetch, self.remote, self.checkout)
                except FetchError as error:
                    self._failed(error)
                    return False
                self._fetched(head)
                if self._settled == (head, before) and why != "api":
                    return True
                jump = await asyncio.to_thread(self._move, head, before)
                reason = why if why in ("startup", "api") else "follow"
                result = await self.reloader.reload(None, reason=reason, expect=Expected(before))
                self.last_result = result
                if result.result == "stale":
                    log.info("another runner applied a commit meanwhile: fetching again")
                    continue
                if jump:
                    self.state.jumps += 1
                    log.warning(
                        "%s was force-pushed (or moved off the applied history): applied %s "
                        "as a jump from %s; the commits in between were not walked",
                        self.remote.ref,
                        head[:7],
                        (before or "")[:7],
                    )
                self.state.applied_commit = await self._applied()
                self._settled = (head, self.state.applied_commit)
                log.debug("git sync (%s) at %s: %s", why, head[:7], result.result)
                return True
            self.state.applied_commit = await self._applied()
            return True

    def _move(self, head: str, before: str | None) -> bool:
        """Check out `head`; whether applying it is a jump from the applied commit `before`."""
        git = open_repository(self.checkout)
        if git is None:
            checkout_commit(self.checkout, head)
            return before is not None
        with git:
            if git.head() != head:
                checkout_commit(self.checkout, head)
            return before is not None and before != head and not git.is_ancestor(before, head)

    def _head(self) -> str | None:
        git = open_repository(self.checkout)
        if git is None:
            return None
        with git:
            return git.head()

    async def _applied(self) -> str | None:
        return await self.store.read(lambda tx: tx.meta(APPLIED_COMMIT_META))

    def _fetched(self, head: str) -> None:
        now = self.clock.now()
        state = self.state
        state.fetches += 1
        state.last_fetch_at = state.last_success_at = now
        state.last_fetch_ok, state.fetched_commit = True, head
        state.last_error_reason = state.last_error = None

    def _failed(self, error: FetchError) -> None:
        state = self.state
        state.fetches += 1
        state.last_fetch_at = self.clock.now()
        state.last_fetch_ok = False
        state.last_error_reason, state.last_error = error.reason, str(error)
        state.errors[error.reason] = state.errors.get(error.reason, 0) + 1
        log.warning("%s", error)


class SyncOnReload:
    """`POST /v1/reload` of a following runner: fetch and apply (a reload of the checkout
    alone could be older than what another replica applied)."""

    def __init__(self, follower: GitFollower) -> None:
        self.follower = follower

    async def reload(
        self, changed: Collection[str] | None = None, *, reason: str = "watch"
    ) -> ReloadResult:
        """Sync now; the reload's result, or `failed` with the fetch error."""
        follower = self.follower
        follower.last_result = None
        if not await follower.sync("api"):
            error = follower.state.last_error
            return ReloadResult("failed", at=follower.clock.now(), reason=reason, error=error)
        return follower.last_result or ReloadResult(at=follower.clock.now(), reason=reason)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")
