"""A small pool of render worker processes (renderprocess.py), spawned once and reused.

Rendering runs in the workers, never in the server's process: a hostile template can
neither block the event loop nor grow the server's memory. Each call hands a batch of
jobs to one worker in one round trip and waits for the answers in a thread. While it
waits it watches the worker: a job past its CPU limit inside one C call (which the
worker's own timer cannot interrupt) is killed, and so is a worker that stopped using
CPU altogether (stopped by a signal). A killed worker's job in progress is decided (a
template over its CPU limit fails; a worker that died or stalled for a reason outside
the template is `RenderUnavailable`, retried later) and the rest of its batch is
rendered again by a fresh worker.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import queue
import threading
from collections.abc import Sequence

from runner.templating.render import EmailJob, RenderError, RenderUnavailable
from runner.templating.renderprocess import Outcome, Stop, WorkerProcess

log = logging.getLogger("postwright.render")

CPU_SECONDS = 2.0  # CPU time one email may take to render
MEMORY_BYTES = 256 << 20  # what a worker may allocate on top of its size before a batch
WORKERS = 2
MIN_CHUNK = 32  # jobs per worker below which a batch is not split


class _Slot:
    """A place for one worker process, started on first use and after a kill."""

    def __init__(self) -> None:
        self.process: WorkerProcess | None = None

    def discard(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.close()


class RenderPool:
    """`size` render workers; `render` is safe to call from several threads at once."""

    def __init__(
        self,
        size: int = WORKERS,
        *,
        cpu_seconds: float = CPU_SECONDS,
        memory_bytes: int = MEMORY_BYTES,
    ) -> None:
        self.size = size
        self.cpu_seconds = cpu_seconds
        self.memory_bytes = memory_bytes
        self._slots: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        self._all = [_Slot() for _ in range(size)]
        for slot in self._all:
            self._slots.put(slot)

    def render(self, jobs: Sequence[EmailJob]) -> list[Outcome]:
        """Render `jobs` on one worker (waiting for a free one); one outcome per job."""
        if not jobs:
            return []
        slot = self._slots.get()
        try:
            return self._render_on(slot, jobs)
        finally:
            self._slots.put(slot)

    async def render_all(self, jobs: Sequence[EmailJob]) -> list[Outcome]:
        """Render `jobs` across the workers, each share in a thread (the loop stays free)."""
        if not jobs:
            return []
        count = max(1, min(self.size, len(jobs) // MIN_CHUNK))
        step = -(-len(jobs) // count)
        shares = [jobs[start : start + step] for start in range(0, len(jobs), step)]
        parts = await asyncio.gather(*(asyncio.to_thread(self.render, s) for s in shares))
        return [outcome for part in parts for outcome in part]

    def worker_pids(self) -> list[int]:
        """The process ids of the workers running now (for operators and tests)."""
        return [slot.process.popen.pid for slot in self._all if slot.process is not None]

    def close(self) -> None:
        """Stop the idle workers; a later render starts new ones."""
        idle: list[_Slot] = []
        while True:
            try:
                idle.append(self._slots.get_nowait())
            except queue.Empty:
                break
        for slot in idle:
            slot.discard()
            self._slots.put(slot)

    def _render_on(self, slot: _Slot, jobs: Sequence[EmailJob]) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        todo = list(range(len(jobs)))
        fruitless = 0  # batches in a row that ended with no job to blame
        while todo:
            try:
                if slot.process is None:
                    slot.process = WorkerProcess(self.cpu_seconds, self.memory_bytes)
                done, stop = slot.process.run([jobs[i] for i in todo], self.cpu_seconds)
            except OSError as error:
                log.error("cannot start a render worker: %s", error)
                slot.discard()
                unavailable = RenderUnavailable(f"no render worker could start: {error}")
                return [outcomes.get(i, unavailable) for i in range(len(jobs))]
            outcomes.update(zip(todo, done, strict=False))
            if stop is None:
                break
            slot.discard()
            rest = todo[len(done) :]
            blamed = stop.index is not None and len(done) <= stop.index < len(todo)
            if blamed:
                assert stop.index is not None
                culprit = todo[stop.index]
                outcomes[culprit] = _stopped(stop)
                rest.remove(culprit)
                fruitless = 0
            else:
                fruitless += 1
                if fruitless >= 2:
                    failure = RenderUnavailable(f"the render worker stopped: {stop.detail}")
                    outcomes.update(dict.fromkeys(rest, failure))
                    break
            log.warning("render worker replaced (%s: %s)", stop.kind, stop.detail)
            todo = rest
        return [outcomes[i] for i in range(len(jobs))]


def _stopped(stop: Stop) -> RenderError | RenderUnavailable:
    """The outcome of the job a stopped worker was rendering."""
    if stop.kind == "cpu":
        return RenderError(stop.detail)
    return RenderUnavailable(f"the render worker stopped: {stop.detail}")


_shared: RenderPool | None = None
_shared_lock = threading.Lock()


def shared_pool() -> RenderPool:
    """The process's render pool, started on first use and stopped at exit."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = RenderPool()
            atexit.register(_shared.close)
        return _shared
