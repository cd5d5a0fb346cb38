"""One render worker process (renderworker.py) seen from the server: started with a clean
environment and a shared progress page, handed a batch of jobs in one frame, and watched
while it renders: killed past a job's CPU limit or when it stops using CPU altogether.
"""

from __future__ import annotations

import mmap
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from runner.templating.render import EmailJob, RenderedEmail, RenderError, RenderUnavailable
from runner.templating.renderworker import FRAME, PROGRESS, decode_outcome, jobs_frame

KILL_GRACE = 0.2  # CPU seconds past the limit before a job stuck in one C call is killed
STALL_SECONDS = 10.0  # a busy worker using no CPU this long (stopped) is replaced
TICK = 0.02  # seconds between two looks at a busy worker
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")

Outcome = RenderedEmail | RenderError | RenderUnavailable


@dataclass(frozen=True)
class Stop:
    """Why a batch ended early: "cpu" (killed over the limit), "stalled" or "died";
    `index` is the job in progress, when one was."""

    kind: str
    index: int | None
    detail: str = ""


class WorkerProcess:
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
    ) -> tuple[list[Outcome], Stop | None]:
        """Render `jobs`; the outcomes of a prefix of them, and why the rest are missing."""
        assert self.popen.stdin is not None and self.popen.stdout is not None
        try:
            _write_all(self.popen.stdin, jobs_frame(list(jobs)))
        except OSError as error:
            return [], Stop("died", None, f"it did not take the jobs ({error.strerror})")
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

    def _ended(self) -> Stop:
        code = self.popen.wait()
        index = self.job_in_progress()[0]
        reason = f"signal {-code}" if code < 0 else f"exit code {code}"
        return Stop("died", index if index >= 0 else None, f"it ended ({reason})")

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

    def __init__(self, process: WorkerProcess, cpu_seconds: float) -> None:
        self.process = process
        self.limit = cpu_seconds + KILL_GRACE
        self.cpu_seconds = cpu_seconds
        self.looked = time.monotonic()
        self.last_cpu: float | None = None
        self.stalled = 0.0

    def look(self) -> Stop | None:
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
            return Stop("cpu", index, message)
        if self.last_cpu is not None and cpu <= self.last_cpu:
            self.stalled += elapsed
            if self.stalled > STALL_SECONDS:
                detail = f"it used no CPU for {STALL_SECONDS:g} s (stopped?)"
                return Stop("stalled", index if index >= 0 else None, detail)
        else:
            self.stalled = 0.0
        self.last_cpu = cpu
        return None


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
