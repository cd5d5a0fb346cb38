"""py-spy sampling of `postwright serve` for benchmarks/e2e.py --profile, and the summary
written from it (the functions with the largest share of samples)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

PYTHON = sys.executable


@contextlib.contextmanager
def sampling(pid: int, out: Path | None, gil: bool = False) -> Iterator[None]:
    """py-spy sampling `pid` (from the client's core) while the block runs; its collapsed
    stacks go to `out`.raw and the top functions by share of samples to `out`."""
    if out is None:
        yield
        return
    raw = out.with_suffix(".raw")
    spy = str(Path(PYTHON).parent / "py-spy")
    command = [spy, "record", "-p", str(pid), "-r", "100", "-f", "raw", "-o", str(raw)]
    command += ["--gil"] if gil else []
    process = subprocess.Popen(
        [*command, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        if not raw.exists():
            raise RuntimeError(f"py-spy wrote nothing: {err.decode()[-2000:]}")
        out.write_text(summarise(raw.read_text()))


def summarise(collapsed: str, top: int = 40) -> str:
    """The functions with the largest share of samples: inclusive (on the stack) and self."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1] for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
    lines = [
        f"{total} samples (py-spy, 100/s per thread, threads py-spy sees as idle left out;"
        " waits inside C code are not seen as idle: uvloop's epoll counts as Runner.run,"
        " the file watcher's wait as WorkerThread.run, fsync at COMMIT as `transaction`;"
        " --profile-gil counts only CPU spent in Python)",
        "",
        "inclusive (on the stack):",
    ]
    for frame, count in sorted(inclusive.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"{100 * count / max(total, 1):6.1f} %  {frame}")
    lines += ["", "self (top of the stack):"]
    for frame, count in sorted(own.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"{100 * count / max(total, 1):6.1f} %  {frame}")
    return "\n".join(lines) + "\n"
