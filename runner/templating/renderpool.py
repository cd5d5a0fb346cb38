"""A small pool of render worker processes (runner.templating.renderworker), spawned once and
reused.

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
import mmap
import os
import queue
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from runner.templating.render import EmailJob, RenderedEmail, RenderError, RenderUnavailable
from runner.templating.renderworker import FRAME, PROGRESS, decode_outcome, jobs_frame

log = logging.getLogger("postwright.render")

CPU_SECONDS = 2.0  # CPU time one email may take to render
MEMORY_BYTES = 256 << 20  # what a worker may allocate on top of its size before a batch
WORKERS = 2
KILL_GRACE = 0.2  # CPU seconds past the limit before a job stuck in one C call is killed
STALL_SECONDS = 10.0  # a busy worker using no CPU this long (stopped) is replaced
TICK = 0.02  # seconds between two looks at a busy worker
MIN_CHUNK = 32  # jobs per worker below which a batch is not split
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")

Outcome = RenderedEmail | RenderError | RenderUnavailable


@dataclass(frozen=True)
class _Stop:
    """Why a batch ended early: "cpu" (killed over the limit), "stalled" or "died";
    `index` is the job in progress, when one was."""

    kind: str
    index: int | None
    detail: str = ""


class _Process:
    """One worker process, its pipes and its progress page."""

    def __init__(self, cpu_seconds: float, memory_bytes: int) -> None:
        self._page_file = tempfile.TemporaryFile()
        descriptor = self._page_file.fileno()
        os.ftruncate(descriptor, PROGRESS.size)
        self.progress = mmap.mmap(descriptor, PROGRESS.size)
        PROGRESS.pack_into(self.progress, 0, -1, 0.0)
        arguments = [str(cpu_seconds), str(memory_bytes), str(descriptor)]
        try:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "runner.templating.renderworker", *arguments],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
                pass_fds=(descriptor,),
                env=_worker_environment(),
                cwd=tempfile.gettempdir(),
                # Its own session: a terminal's Ctrl-C or a stop of the server's process
                # group is the server's to handle, not the worker's.
                start_new_session=True,
            )
        except BaseException:
            self._release()
            raise

    def run(
        self, jobs: Sequence[EmailJob], cpu_seconds: float
    ) -> tuple[list[Outcome], _Stop | None]:
        """Render `jobs`; the outcomes of a prefix of them, and why the rest are missing."""
        assert self.popen.stdin is not None and self.popen.stdout is not None
        try:
            _write_all(self.popen.stdin, jobs_frame(list(jobs)))
        except OSError as error:
            return [], _Stop("died", None, f"it did not take the jobs ({error.strerror})")
        answers = _Answers(self.popen.stdout.fileno())
        watch = _Watch(self, cpu_seconds)
        while len(answers.outcomes) < len(jobs):
            if not answers.wait(TICK):
                return answers.outcomes, self._ended()
            stop = watch.look()
            if stop is not None:
                self.popen.kill()
                self.popen.wait()
                return answers.outcomes, stop
        return answers.outcomes, None

    def cpu(self) -> float | None:
        """The worker's CPU time in seconds (from /proc), None where it cannot be read."""
        try:
            with open(f"/proc/{self.popen.pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def job_in_progress(self) -> tuple[int, float]:
        """The index of the job being rendered (-1: none) and the CPU time at its start."""
        index, started = PROGRESS.unpack_from(self.progress)
        return int(index), float(started)

    def _ended(self) -> _Stop:
        code = self.popen.wait()
        index = self.job_in_progress()[0]
        reason = f"signal {-code}" if code < 0 else f"exit code {code}"
        return _Stop("died", index if index >= 0 else None, f"it ended ({reason})")

    def close(self) -> None:
        """Stop the worker: end of input, then a kill if it does not leave at once."""
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                stream.close()
        try:
            self.popen.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self._release()

    def _release(self) -> None:
        if hasattr(self, "progress"):
            self.progress.close()
        self._page_file.close()


class _Answers:
    """Frames read from a worker's stdout as they arrive."""

    def __init__(self, descriptor: int) -> None:
        self.descriptor = descriptor
        self.outcomes: list[Outcome] = []
        self._buffer = bytearray()
        self._poll = select.poll()
        self._poll.register(descriptor, select.POLLIN)

    def wait(self, seconds: float) -> bool:
        """Read what arrives within `seconds`; False at the end of the stream."""
        if not self._poll.poll(seconds * 1000):
            return True
        chunk = os.read(self.descriptor, 1 << 20)
        if not chunk:
            return False
        self._buffer += chunk
        while len(self._buffer) >= FRAME.size:
            (size,) = FRAME.unpack_from(self._buffer)
            end = FRAME.size + size
            if len(self._buffer) < end:
                break
            self.outcomes.append(decode_outcome(bytes(self._buffer[FRAME.size : end])))
            del self._buffer[:end]
        return True


class _Watch:
    """The CPU limit of the job in progress and the stall limit of a busy worker."""

    def __init__(self, process: _Process, cpu_seconds: float) -> None:
        self.process = process
        self.limit = cpu_seconds + KILL_GRACE
        self.cpu_seconds = cpu_seconds
        self.looked = time.monotonic()
        self.last_cpu: float | None = None
        self.stalled = 0.0

    def look(self) -> _Stop | None:
        now = time.monotonic()
        if now - self.looked < TICK:
            return None
        # Only time this thread was awake counts: a paused server never stalls its worker.
        elapsed, self.looked = min(now - self.looked, 2 * TICK), now
        index, started = self.process.job_in_progress()
        cpu = self.process.cpu()
        if cpu is None:
            return None
        if index >= 0 and cpu - started > self.limit:
            message = f"rendering used more than {self.cpu_seconds:g} s of CPU"
            return _Stop("cpu", index, message)
        if self.last_cpu is not None and cpu <= self.last_cpu:
            self.stalled += elapsed
            if self.stalled > STALL_SECONDS:
                detail = f"it used no CPU for {STALL_SECONDS:g} s (stopped?)"
                return _Stop("stalled", index if index >= 0 else None, detail)
        else:
            self.stalled = 0.0
        self.last_cpu = cpu
        return None


class _Slot:
    """A place for one worker process, started on first use and after a kill."""

    def __init__(self) -> None:
        self.process: _Process | None = None

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
                    slot.process = _Process(self.cpu_seconds, self.memory_bytes)
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


def _stopped(stop: _Stop) -> RenderError | RenderUnavailable:
    """The outcome of the job a stopped worker was rendering."""
    if stop.kind == "cpu":
        return RenderError(stop.detail)
    return RenderUnavailable(f"the render worker stopped: {stop.detail}")


def _write_all(stream: IO[bytes], data: bytes) -> None:
    """Write every byte (an unbuffered pipe may take a large frame in parts)."""
    view = memoryview(data)
    while view:
        written = stream.write(view)
        view = view[written or 0 :]


def _worker_environment() -> dict[str, str]:
    """Only what Python needs: the server's secrets stay out of the workers."""
    environment = {name: os.environ[name] for name in _ENVIRONMENT if name in os.environ}
    paths = [os.path.abspath(p) for p in sys.path if p]
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    return environment


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
