"""A render worker process: renders batches of emails under hard CPU and memory limits.

Started by runner.templating.renderpool as
`python -m runner.templating.renderworker CPU_SECONDS MEMORY_BYTES FD`.
It reads frames from stdin, each a pickled list of `EmailJob`, and writes one frame per
job to stdout: a `RenderedEmail` or a `RenderError` as JSON (never a pickle: even a worker
whose sandbox was broken could not make the server run code by what it answers). Before
each job it writes the job's index and its own CPU time into the shared progress page
(file descriptor FD), so the pool can tell which job a killed worker was rendering.

Limits: a CPU timer (ITIMER_PROF, CPU time only, so a paused process never times out)
interrupts a job at CPU_SECONDS; a job stuck inside one C call is killed by the pool;
the address space is capped at the worker's size before the batch plus MEMORY_BYTES, so
a huge allocation fails as MemoryError instead of growing the machine's memory.
"""

from __future__ import annotations

import io
import json
import mmap
import os
import pickle
import resource
import signal
import struct
import sys
import time
from typing import Any, BinaryIO

from runner.templating.render import EmailJob, RenderedEmail, RenderError, render_job

FRAME = struct.Struct("<Q")  # the length of the pickle that follows
NICENESS = 10
PROGRESS = struct.Struct("<qd")  # index of the job in progress (-1: idle), CPU at its start
_PAGE_SIZE = resource.getpagesize()


class _OverCpu(BaseException):
    """Raised by the CPU timer inside a job; a BaseException so that no `except
    Exception` of template code or Jinja can swallow it."""


class _Timer:
    """ITIMER_PROF around each job; the handler raises only while a job runs."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.active = False
        signal.signal(signal.SIGPROF, self._expired)

    def _expired(self, signum: int, frame: Any) -> None:
        if self.active:
            self.active = False
            raise _OverCpu

    def start(self) -> None:
        self.active = True
        signal.setitimer(signal.ITIMER_PROF, self.seconds)

    def stop(self) -> None:
        self.active = False  # first: a signal arriving now is ignored
        signal.setitimer(signal.ITIMER_PROF, 0)


def read_frame(stream: BinaryIO) -> Any:
    """The next object of `stream`, or None at its end."""
    header = stream.read(FRAME.size)
    if len(header) < FRAME.size:
        return None
    (size,) = FRAME.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)


def frame(data: bytes) -> bytes:
    """`data` as one frame."""
    return FRAME.pack(len(data)) + data


def jobs_frame(jobs: list[EmailJob]) -> bytes:
    """The frame asking a worker to render `jobs`."""
    return frame(pickle.dumps(jobs, protocol=pickle.HIGHEST_PROTOCOL))


def encode_outcome(outcome: RenderedEmail | RenderError) -> bytes:
    """A worker's answer for one job."""
    if isinstance(outcome, RenderError):
        return json.dumps({"error": str(outcome)}).encode()
    parts = [outcome.subject, outcome.html, outcome.text, outcome.headers]
    return json.dumps(parts).encode()


def decode_outcome(data: bytes) -> RenderedEmail | RenderError:
    """The outcome a worker answered; a malformed answer is a RenderError saying so."""
    try:
        value = json.loads(data)
        if isinstance(value, dict):
            return RenderError(str(value["error"]))
        subject, html, text, headers = value
        return RenderedEmail(
            _text(subject),
            _optional_text(html),
            _optional_text(text),
            {_text(k): _text(v) for k, v in headers.items()},
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return RenderError("the render worker answered something that is not an email")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def render_guarded(job: EmailJob, timer: _Timer, cpu_seconds: float) -> RenderedEmail | RenderError:
    """One job within the CPU timer; every failure becomes a RenderError."""
    try:
        timer.start()
        try:
            return render_job(job)
        finally:
            timer.stop()
    except _OverCpu:
        return RenderError(f"rendering used more than {cpu_seconds:g} s of CPU")
    except RenderError as error:
        return error
    except MemoryError:
        return RenderError("rendering needs more memory than a render may use")
    except Exception as error:  # rendering is user code; the worker must go on
        return RenderError(f"{type(error).__name__}: {error}")


def _cap_memory(headroom: int) -> None:
    """Cap the address space at its current size plus `headroom` bytes (where it is known)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            size = int(statm.read().split()[0]) * _PAGE_SIZE
    except OSError:  # not Linux: the CPU limits still hold
        return
    limit = size + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))


def serve(source: BinaryIO, sink: BinaryIO, progress: mmap.mmap, cpu: float, memory: int) -> None:
    """Answer batches from `source` until it ends."""
    timer = _Timer(cpu)
    while True:
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        jobs = read_frame(source)
        if jobs is None:
            return
        _cap_memory(memory)
        for index, job in enumerate(jobs):
            PROGRESS.pack_into(progress, 0, index, time.process_time())
            sink.write(frame(encode_outcome(render_guarded(job, timer, cpu))))
        PROGRESS.pack_into(progress, 0, -1, 0.0)
        sink.flush()


def main(argv: list[str]) -> int:
    """Run the worker on stdin and stdout (see the module docstring)."""
    cpu, memory, descriptor = float(argv[0]), int(argv[1]), int(argv[2])
    # The pool stops workers by closing their stdin; Ctrl-C in a terminal is not for them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Rendering is background work: under contention the server's requests go first (the
    # caps count CPU time, so a slower render is never a failed one).
    os.nice(NICENESS)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    progress = mmap.mmap(descriptor, PROGRESS.size)
    source = os.fdopen(0, "rb", buffering=1 << 16)
    sink = os.fdopen(1, "wb", buffering=1 << 18)
    # Anything printed by mistake goes to stderr, never into the frames on stdout.
    sys.stdout = sys.stderr
    sys.stdin = io.StringIO()
    serve(source, sink, progress, cpu, memory)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
