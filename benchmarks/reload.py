"""Benchmark of hot reload: from a file save to the change being live in the API.

Generates a git repository with 1,000 automations (the generator of
benchmarks/validate.py), runs the real `postwright serve` on it as a subprocess,
then saves one paused automation's subject at a time the way editors do (a temp
file renamed over the old one) and polls `GET /v1/automations/{id}` every 5 ms
until the new subject is the applied one. A serve with a single automation,
measured in the same run, is the baseline. Then 1,000 more saves, each waited
for, with the serve process's RSS (VmRSS) sampled every 100 reloads.

Targets: p95 save -> visible under 500 ms including the debounce; no memory growth trend once
every saved file has been saved once (until it is committed, a saved file's committed version
is kept beside it: memory bounded by the number of files, not by the number of reloads).

    .venv/bin/python benchmarks/reload.py [--saves 50] [--reloads 1000] [--poll] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from tests.serving import serve  # noqa: E402

FILES = 1_000
POLL_EVERY = 0.005
VISIBLE_TIMEOUT = 10.0
READY_TIMEOUT = 180.0
TARGET_P95_MS = 500.0
SAMPLE_EVERY = 100
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@postwright.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@postwright.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


# --- the generated repository ---------------------------------------------------------


def _generator() -> ModuleType:
    """benchmarks/validate.py, loaded by path (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_validate", ROOT / "benchmarks/validate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


GEN = _generator()


def path_of(i: int) -> str:
    """The repository path of automation `i` (as benchmarks/validate.py lays them out)."""
    return f"automations/team-{i % 7}/auto-{i:04d}.yaml"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", *args], cwd=repo, env={**os.environ, **_GIT_ENV}, check=True, capture_output=True
    )


def build_repo(repo: Path, count: int) -> list[int]:
    """A committed repository of `count` automations, the paused ones still `running`
    (a new file cannot start paused); the indexes of those to pause.

    The one-automation repository holds a single such file, so both serves
    reload the same kind of change.
    """
    repo.mkdir(parents=True)
    indexes = list(range(count)) if count > 1 else [_first_paused()]
    paused = [i for i in indexes if GEN.status_of(i) == "paused"]
    (repo / "templates").mkdir()
    for i in indexes:
        target = repo / path_of(i)
        target.parent.mkdir(parents=True, exist_ok=True)
        status = "running" if i in paused else None
        target.write_text(GEN.automation_text(i, status=status), encoding="utf-8")
        if i % 4 == 0:
            (repo / f"templates/t{i:04d}.html").write_text(GEN.html_body(i) + "\n")
    (repo / ".gitignore").write_text(".postwright/\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", f"{len(indexes)} automations")
    return paused


def pause_all(repo: Path, paused: Sequence[int]) -> None:
    """Commit the pause of every automation in `paused`."""
    for i in paused:
        (repo / path_of(i)).write_text(GEN.automation_text(i), encoding="utf-8")
    _git(repo, "commit", "-q", "-a", "-m", f"pause {len(paused)} automations")


def _first_paused() -> int:
    return next(i for i in range(FILES) if GEN.status_of(i) == "paused")


def save_subject(repo: Path, i: int, mark: str) -> float:
    """Rewrite automation `i`'s subject to end with `mark`, as an editor saves: a temp file
    renamed over the old one. The monotonic instant of the rename (the save)."""
    target = repo / path_of(i)
    lines = target.read_text(encoding="utf-8").splitlines(keepends=True)
    for n, line in enumerate(lines):
        if line.startswith("  subject: "):
            head = line.rstrip("\n").rstrip('"').split(" ~", 1)[0]
            lines[n] = f'{head} ~{mark}"\n'
            break
    else:
        raise RuntimeError(f"{target} has no subject line")
    temp = target.with_name(f".{target.name}.swp")
    temp.write_text("".join(lines), encoding="utf-8")
    saved = time.monotonic()
    os.replace(temp, target)
    return saved


# --- the server -----------------------------------------------------------------------


@dataclass
class Serve:
    """A running `postwright serve` and a client to it."""

    process: subprocess.Popen[bytes]
    url: str
    http: httpx.Client

    def rss_kib(self) -> int:
        """VmRSS of the serve process, in KiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS in /proc status")

    def applied_source(self, ident: str) -> str:
        """The applied source the API reports for `ident` (`applied.source`, else `source`)."""
        body = self.http.get(f"/v1/automations/{ident}").json()
        applied = body.get("applied")
        source = applied.get("source") if isinstance(applied, dict) else body.get("source")
        return source if isinstance(source, str) else ""


@contextlib.contextmanager
def serving(repo: Path, log: Path, poll: bool) -> Iterator[Serve]:
    """`postwright serve` on `repo` until the block ends; its output goes to `log`."""
    args = ["--repo", str(repo), *(["--poll"] if poll else [])]
    started = time.monotonic()
    # The caller's POSTWRIGHT_ settings apply (a PostgreSQL URL to measure on, say).
    with (
        serve(args, log, environ=dict(os.environ), wait=READY_TIMEOUT) as served,
        httpx.Client(base_url=served.url, timeout=10.0) as http,
    ):
        print(f"  serve on {repo.name}: ready in {time.monotonic() - started:.1f} s")
        try:
            yield Serve(served.process, served.url, http)
        except BaseException:
            print(f"server output ({log}):\n{served.output()[-3000:]}", file=sys.stderr)
            raise


def expect_paused(serve: Serve, i: int) -> None:
    """Fail early when the start-up apply did not pause the automations."""
    body = serve.http.get(f"/v1/automations/auto-{i:04d}").json()
    if body.get("effective_status") != "paused":
        raise RuntimeError(f"auto-{i:04d} is not paused after start-up: {body}")


# --- measuring ------------------------------------------------------------------------


class NotVisible(RuntimeError):
    """A save did not show in the API within VISIBLE_TIMEOUT."""


def save_and_wait(serve: Serve, repo: Path, i: int, mark: str) -> float:
    """Save automation `i` with `mark`; seconds until the API shows it applied."""
    ident = f"auto-{i:04d}"
    saved = save_subject(repo, i, mark)
    needle = f'~{mark}"'
    while True:
        if needle in serve.applied_source(ident):
            return time.monotonic() - saved
        if time.monotonic() - saved > VISIBLE_TIMEOUT:
            raise NotVisible(f"{ident}: save {mark} not visible after {VISIBLE_TIMEOUT:g} s")
        time.sleep(POLL_EVERY)


def latencies(serve: Serve, repo: Path, paused: Sequence[int], saves: int, tag: str) -> list[float]:
    """`saves` timed saves, round robin over the paused automations, in milliseconds."""
    return [
        1000 * save_and_wait(serve, repo, paused[n % len(paused)], f"{tag}{n}")
        for n in range(saves)
    ]


def memory(
    serve: Serve, repo: Path, paused: Sequence[int], reloads: int, progress: Callable[[str], None]
) -> list[tuple[int, int]]:
    """(reloads done, RSS KiB) every SAMPLE_EVERY reloads, each save waited for."""
    samples = [(0, serve.rss_kib())]
    for n in range(1, reloads + 1):
        save_and_wait(serve, repo, paused[n % len(paused)], f"m{n}")
        if n % SAMPLE_EVERY == 0:
            samples.append((n, serve.rss_kib()))
            progress(f"  {n} reloads: RSS {samples[-1][1] / 1024:.1f} MiB")
    return samples


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(len(ordered) * fraction) - 1))]


def slope(samples: Sequence[tuple[int, int]]) -> float:
    """Least-squares slope of RSS over reloads, in KiB per 100 reloads."""
    xs = [float(x) for x, _ in samples]
    ys = [float(y) for _, y in samples]
    if len(xs) < 2:
        return 0.0
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    rise = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    return 100 * rise / spread if spread else 0.0


# --- the run --------------------------------------------------------------------------


@dataclass
class Row:
    """One measured scenario."""

    name: str
    automations: int
    millis: list[float]


def run(work: Path, saves: int, reloads: int, poll: bool) -> int:
    rows: list[Row] = []
    samples: list[tuple[int, int]] = []
    files = 0  # paused files the memory run saves in turn
    for name, count in (("baseline: 1 automation", 1), (f"{FILES:,} automations", FILES)):
        repo = work / f"repo-{count}"
        print(f"{name}: generating {repo} ...")
        paused = build_repo(repo, count)
        with serving(repo, work / f"start-{count}.log", poll):
            pass  # applies them running
        pause_all(repo, paused)
        with serving(repo, work / f"serve-{count}.log", poll) as serve:
            expect_paused(serve, paused[0])
            latencies(serve, repo, paused, 3, "warm")  # first reload pays imports and caches
            rows.append(Row(name, count, latencies(serve, repo, paused, saves, "s")))
            print(f"  {saves} saves: median {statistics.median(rows[-1].millis):.1f} ms")
            if count == FILES and reloads:
                print(f"memory: {reloads} reloads, RSS every {SAMPLE_EVERY}")
                samples = memory(serve, repo, paused, reloads, print)
                files = len(paused)
    return report(rows, samples, saves, poll, files)


def warmed(samples: Sequence[tuple[int, int]], files: int) -> list[tuple[int, int]]:
    """The samples taken once every saved file has been saved (and after the first
    SAMPLE_EVERY reloads): from then on the reloader holds a fixed set of versions."""
    start = max(SAMPLE_EVERY, files)
    return [(n, kib) for n, kib in samples if n >= start]


def report(
    rows: Sequence[Row],
    samples: Sequence[tuple[int, int]],
    saves: int,
    poll: bool,
    files: int = 0,
) -> int:
    mode = "--poll" if poll else "inotify"
    print()
    print(f"save -> visible in GET /v1/automations/{{id}} ({saves} saves each, {mode}, ms)")
    print(f"{'scenario':<26}{'median':>9}{'p95':>9}{'max':>9}")
    for row in rows:
        values = row.millis
        median, p95 = statistics.median(values), percentile(values, 0.95)
        print(f"{row.name:<26}{median:>9.1f}{p95:>9.1f}{max(values):>9.1f}")
    big = rows[-1].millis
    p95_ok = percentile(big, 0.95) < TARGET_P95_MS
    print(
        f"target: p95 < {TARGET_P95_MS:.0f} ms with {FILES:,} automations: "
        f"{'met' if p95_ok else 'MISSED'}"
    )
    growth_ok = True
    if samples:
        print()
        print(
            "serve RSS over reloads (MiB): "
            + ", ".join(f"{n}: {kib / 1024:.1f}" for n, kib in samples)
        )
        whole, early = slope(samples), slope(samples[1:])
        settled_samples = warmed(samples, files)
        settled = slope(settled_samples)
        total = (samples[-1][1] - samples[0][1]) / 1024
        print(
            f"slope: {whole:+.1f} KiB per 100 reloads overall, {early:+.1f} after the first "
            f"{SAMPLE_EVERY}; first -> last {total:+.1f} MiB"
        )
        if len(settled_samples) < 2:
            print(f"no warmed-up slope: run more than {max(SAMPLE_EVERY, files)} reloads")
            return 1
        print(
            f"warmed up (each of the {files} saved files saved once, from reload "
            f"{settled_samples[0][0]}): {settled:+.1f} KiB per 100 reloads"
        )
        # A leak of a definition per reload (~4 KiB) would show as >= 400 KiB per 100.
        growth_ok = settled < 100
        print(
            f"target: no memory growth trend (< 100 KiB per 100 reloads after warm-up): "
            f"{'met' if growth_ok else 'MISSED'}"
        )
    return 0 if p95_ok and growth_ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--saves", type=int, default=50, help="timed saves per scenario")
    parser.add_argument("--reloads", type=int, default=1000, help="reloads of the memory run")
    parser.add_argument("--poll", action="store_true", help="run serve with --poll")
    parser.add_argument("--keep", action="store_true", help="keep the generated repositories")
    args = parser.parse_args(argv)
    # Killed, still stop the serve processes (the `finally` blocks run on SystemExit).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    work = Path(tempfile.mkdtemp(prefix="pw-reload-"))
    try:
        return run(work, args.saves, args.reloads, args.poll)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
