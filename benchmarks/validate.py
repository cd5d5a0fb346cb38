"""Benchmark of `postwright validate` on 1,000 automations and a 50-commit history.

Generates a git repository in a temporary folder, then times the real commands
as subprocesses (wall clock, median of several runs): (a) `postwright validate`,
(b) `check-jsonschema` over the same files, (c) `postwright validate --base`
over the history, and (d) PyYAML's C loader alone, in process, as a floor.

    .venv/bin/python benchmarks/validate.py [--quick] [--reps N] [--keep] [--profile]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schema" / "automation.schema.json"
NOW = "2026-06-01T00:00:00Z"
FILES = 1_000
COMMITS = 50
PER_COMMIT = 20
KINDS = ("event", "api", "email", "date", "schedule")
WORDS = (
    "autumn bargain canvas daylight ember fjord garnet harbour indigo juniper kestrel lantern "
    "meadow nectar orchard pebble quartz rosemary saffron thistle umber velvet willow yarrow"
).split()
NAME = "{{ subscriber.fields.first_name | default('friend') }}"
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@postwright.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@postwright.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


# --- the generated repository ---------------------------------------------------------


def _words(seed: int, count: int) -> str:
    return " ".join(WORDS[(seed * 7 + k * 13 + k * k) % len(WORDS)] for k in range(count))


def kind_of(i: int) -> str:
    """The trigger type of file `i`: every type, evenly."""
    return KINDS[i % len(KINDS)]


def status_of(i: int) -> str:
    """Sources and email-triggered files run; the others mix running, paused and draft."""
    if kind_of(i) in ("event", "email"):
        return "running"
    return {1: "running", 6: "paused", 3: "running", 8: "draft", 4: "running", 9: "paused"}[i % 10]


def _trigger(i: int) -> list[str]:
    kind = kind_of(i)
    if kind == "event":
        return [
            "  type: event",
            f"  event: order.placed_{i}",
            "  where: {field: event.data.total, op: gt, value: 0}",
        ]
    if kind == "api":
        return ["  type: api"]
    if kind == "email":
        action = ("opened", "clicked", "not_opened")[i % 3]
        lines = ["  type: email", f"  action: {action}", f"  automation: auto-{i - 2:04d}"]
        if action == "clicked":
            lines.append(f"  link_contains: /p/{i - 2}")
        if action == "not_opened":
            lines.append("  within: 3d")
        return lines
    if kind == "date":
        return [
            "  type: date",
            "  field: subscriber.fields.birthday",
            "  offset: -3d",
            '  at: "10:00"',
            "  timezone: subscriber",
        ]
    return [
        "  type: schedule",
        f'  cron: "{i % 60} {8 + i % 10} * * mon"',
        "  timezone: Europe/Berlin",
    ]


def automation_text(i: int, *, status: str | None = None, revision: int = 0) -> str:
    """About 40 lines of valid YAML for automation `i`; `revision` varies the definition."""
    kind = kind_of(i)
    lines = [
        "# yaml-language-server: $schema=../../schema/automation.schema.json",
        f"id: auto-{i:04d}",
        f"name: {_words(i, 4).title()} {i}",
        "description: >",
        f"  {_words(i + 1, 9)},",
        f"  then {_words(i + 2, 7)}.",
        f"labels: {{team: team-{i % 7}, batch: b{revision}}}",
        f"status: {status or status_of(i)}",
        "",
        "trigger:",
        *_trigger(i),
        "",
        "audience:",
        "  all:",
        f"    - {{field: subscriber.fields.plan, op: ne, value: plan-{i % 5}}}",
        f"    - {{not: {{in_group: staff-{i % 3}}}}}",
        f"wait: {1 + i % 9}d{i % 24}h",
        "exit_on:",
        "  - event: purchase",
    ]
    if kind in ("event", "api", "email"):
        lines.append(f"retrigger: {{cooldown: {1 + i % 48}h}}")
    if kind != "schedule":
        lines.append(f"repeat: {{every: {1 + i % 3}w, times: {1 + i % 4}}}")
    lines += [
        "send_window:",
        "  days: [mon, tue, wed, thu, fri]",
        f'  start: "{8 + i % 4:02d}:00"',
        f'  end: "{18 + i % 4:02d}:30"',
        "  timezone: Asia/Seoul",
        "",
        "email:",
        f'  from: "Shop {i % 13} <news{i % 13}@shop.postwright.dev>"',
        f'  subject: "{NAME}, {_words(i + revision, 3)} no. {i}"',
        f"  preheader: {_words(i + 3, 6)} {i}.{revision}",
    ]
    if i % 4 == 0:
        lines.append(f"  html_file: ../../templates/t{i:04d}.html")
    else:
        lines += ["  html: |", *("    " + row for row in html_body(i, revision).splitlines())]
    lines += [
        f'  text: "{_words(i + 4, 8)} {i}: {{{{ unsubscribe_url }}}}"',
        f"  tags: [t{i % 11}]",
    ]
    return "\n".join(lines) + "\n"


def html_body(i: int, revision: int = 0) -> str:
    """An email body, different for every file and revision."""
    data = (
        "{{ event.data.total | default(0) }}" if kind_of(i) == "event" else "{{ automation.name }}"
    )
    return "\n".join(
        [
            f"<h1>Hello {{{{ subscriber.fields.first_name | default('there') }}}} #{i}</h1>",
            f"<p>{_words(i + 5, 10)}.</p>",
            "{% if subscriber.fields.vip | default(false) %}",
            f"<p>{_words(i + 6, 6)}: {data}</p>",
            "{% endif %}",
            f'<p><a href="https://shop{i % 7}.postwright.dev/p/{i}">{_words(i + revision, 2)}</a>',
            "</p>",
            '<p><small><a href="{{ unsubscribe_url }}">Unsubscribe</a></small></p>',
        ]
    )


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, **_GIT_ENV}
    done = subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def _path(i: int) -> str:
    return f"automations/team-{i % 7}/auto-{i:04d}.yaml"


def build_repo(repo: Path) -> str:
    """Create the repository and its history; return the base commit."""
    _git(repo, "init", "-q", "-b", "main")
    (repo / "templates").mkdir()
    for i in range(FILES):
        target = repo / _path(i)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(automation_text(i))
        if i % 4 == 0:
            (repo / f"templates/t{i:04d}.html").write_text(html_body(i) + "\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "1,000 automations")
    base = _git(repo, "rev-parse", "HEAD")
    for commit in range(COMMITS):
        for i in range(commit * PER_COMMIT, (commit + 1) * PER_COMMIT):
            (repo / _path(i)).write_text(legal_change(i, commit + 1))
        _git(repo, "commit", "-q", "-a", "-m", f"change {commit + 1}")
    return base


def legal_change(i: int, revision: int) -> str:
    """Edit a paused or draft file, pause a running one, or change only metadata."""
    status = status_of(i)
    if status in ("paused", "draft"):
        return automation_text(i, revision=revision)
    if kind_of(i) in ("event", "email"):  # email-trigger sources keep running
        text = automation_text(i)
        return text.replace("labels: {team:", f"labels: {{note: rev{revision}, team:", 1)
    return automation_text(i, status="paused")


# --- measuring -------------------------------------------------------------------------


@dataclass
class Measure:
    """One benchmark line: its median and every sample, in seconds."""

    label: str
    samples: list[float]
    note: str = ""

    @property
    def median(self) -> float:
        """The median sample."""
        return statistics.median(self.samples)


def time_command(argv: Sequence[str], cwd: Path, reps: int) -> tuple[list[float], int, str]:
    """Wall-clock seconds of `reps` runs after one warm-up; the exit code and output tail."""
    samples: list[float] = []
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    for _ in range(reps):
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
        samples.append(time.perf_counter() - started)
    tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
    return samples, done.returncode, " | ".join(tail)


def time_call(call: Callable[[], object], reps: int) -> list[float]:
    """Seconds of `reps` in-process calls after one warm-up."""
    call()
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def parse_with_libyaml(files: Sequence[Path]) -> None:
    """Parse every file with PyYAML's CSafeLoader (the reference floor)."""
    for path in files:
        yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)


def run(reps: int, keep: bool, profile: bool) -> int:
    """Build the repository, measure, print the table; 1 when a command misbehaved."""
    bin_dir = ROOT / ".venv" / "bin"
    if not bin_dir.is_dir():
        bin_dir = Path(sys.executable).parent
    work = Path(tempfile.mkdtemp(prefix="postwright-bench-"))
    try:
        started = time.perf_counter()
        base = build_repo(work)
        elapsed = time.perf_counter() - started
        print(f"generated {FILES} files and {COMMITS} commits in {work} ({elapsed:.1f} s)")
        files = sorted(work.glob("automations/**/*.yaml"))
        lines = sum(len(p.read_text().splitlines()) for p in files) / len(files)
        print(f"{len(files)} automation files, {lines:.0f} lines on average; {reps} runs each\n")
        common = ["--repo", str(work), "--now", NOW]
        measures: list[Measure] = []
        failed = False

        def command(label: str, argv: list[str]) -> None:
            nonlocal failed
            samples, code, tail = time_command(argv, work, reps)
            measures.append(Measure(label, samples, f"exit {code}" + (f": {tail}" if code else "")))
            failed = failed or code != 0

        command("(a) postwright validate", [str(bin_dir / "postwright"), "validate", *common])
        rel = [str(p.relative_to(work)) for p in files]
        command(
            "(b) check-jsonschema",
            [str(bin_dir / "check-jsonschema"), "--schemafile", str(SCHEMA), *rel],
        )
        if (ROOT / "runner" / "checking" / "walk.py").is_file():
            argv = [str(bin_dir / "postwright"), "validate", "--base", base, *common]
            command(f"(c) postwright validate --base ({COMMITS} commits)", argv)
        else:
            print("(c) skipped: runner/checking/walk.py (the history walk) is not there yet")
        measures.append(
            Measure(
                "(d) PyYAML CSafeLoader, in process",
                time_call(lambda: parse_with_libyaml(files), reps),
            )
        )
        report(measures)
        if profile:
            profile_validate(work, bin_dir)
        if keep:
            print(f"\nkept {work}")
        return 1 if failed else 0
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def report(measures: Sequence[Measure]) -> None:
    """Print the figures and the two target ratios."""
    width = max(len(m.label) for m in measures)
    print(f"{'measure'.ljust(width)}  median   min      max      note")
    for m in measures:
        low, high = min(m.samples), max(m.samples)
        print(f"{m.label.ljust(width)}  {m.median:6.3f}s {low:6.3f}s {high:6.3f}s  {m.note}")
    by = {m.label[:3]: m.median for m in measures}
    if "(a)" in by and "(b)" in by:
        ratio = by["(a)"] / by["(b)"]
        print(f"\na/b = {ratio:.2f}  (target <= 0.5: {'met' if ratio <= 0.5 else 'NOT met'})")
    if "(a)" in by and "(c)" in by:
        ratio = by["(c)"] / by["(a)"]
        print(f"c/a = {ratio:.2f}  (target < 3: {'met' if ratio < 3 else 'NOT met'})")


# --- where the time goes -----------------------------------------------------------------


def profile_validate(work: Path, bin_dir: Path) -> None:
    """Import times per package, in-process phases, and the cProfile top of (a)."""
    python = str(bin_dir / "python")
    code = "import runner.cli, sys; sys.exit(runner.cli.main(sys.argv[1:]))"
    argv = [python, "-X", "importtime", "-c", code, "validate", "--repo", str(work), "--now", NOW]
    stderr = subprocess.run(argv, cwd=work, capture_output=True, text=True).stderr
    totals: dict[str, int] = {}
    for row in stderr.splitlines():
        parts = row.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        self_time = int(parts[0].split(":")[-1])
        package = parts[2].strip().split(".")[0]
        if package in sys.stdlib_module_names:
            package = "(standard library)"
        totals[package] = totals.get(package, 0) + self_time
    print("\nimport time by package (self times summed), ms:")
    for package, micros in sorted(totals.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {package:<24} {micros / 1000:7.1f}")
    print(f"  {'(all)':<24} {sum(totals.values()) / 1000:7.1f}")
    phases(work)
    # A fresh process, so no cache warmed by phases() flatters the profile.
    script = (
        "import cProfile, io, pstats, sys\n"
        "from runner.cli.main import main as cli\n"
        "profiler = cProfile.Profile()\n"
        "profiler.runcall(cli.main, sys.argv[1:], io.StringIO())\n"
        "pstats.Stats(profiler).sort_stats('cumulative').print_stats(30)\n"
    )
    argv = [python, "-c", script, "validate", "--repo", str(work), "--now", NOW]
    profile = subprocess.run(argv, cwd=work, capture_output=True, text=True).stdout
    print("\ncProfile of (a), by cumulative time:")
    print("\n".join(line for line in profile.splitlines()[:45] if line.strip()))


def phases(work: Path) -> None:
    """Seconds of each stage of checking the 1,000 files, in process (one cold run each)."""
    from datetime import datetime

    from runner.checking import semantics
    from runner.core.config import Config
    from runner.core.loader import Loaded, load_automation
    from runner.core.model import Automation
    from runner.core.version import template_paths
    from runner.core.yamlread import read_yaml
    from runner.repo.files import walk_directory
    from runner.templating import checks as templates

    now = datetime.fromisoformat(NOW.replace("Z", "+00:00"))
    paths = [p for p in walk_directory(work, ["automations"]) if p.endswith(".yaml")]
    contents = {p: (work / p).read_bytes() for p in paths}
    loaded: dict[str, Loaded[Automation]] = {}
    rows: list[tuple[str, float]] = []

    def timed(label: str, call: Callable[[], object]) -> None:
        started = time.perf_counter()
        call()
        rows.append((label, time.perf_counter() - started))

    def load_all() -> None:
        for path, content in contents.items():
            loaded[path] = load_automation(path, content)

    def check_templates() -> None:
        for path, item in loaded.items():
            if item.model is None:
                continue
            named = template_paths(path, item.model)
            texts = {k: (work / v).read_text() if v else None for k, v in named.items()}
            templates.template_findings(item, named, texts)

    timed(
        "read_yaml (libyaml events + positions)",
        lambda: [read_yaml(p, c) for p, c in contents.items()],
    )
    timed("load_automation (YAML + pydantic)", load_all)
    timed("templates.template_findings", check_templates)
    timed(
        "semantics.cross_file_findings",
        lambda: semantics.cross_file_findings(loaded, {}, Config(), now),
    )
    print("\nin-process phases over the 1,000 files (one cold run each), s:")
    for label, seconds in rows:
        print(f"  {label:<42} {seconds:6.3f}")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options and run the benchmark."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 runs each instead of 5")
    parser.add_argument("--reps", type=int, default=None, help="runs per measure (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep the generated repository")
    parser.add_argument(
        "--profile", action="store_true", help="also show where (a) spends its time"
    )
    args = parser.parse_args(argv)
    reps = args.reps or (2 if args.quick else 5)
    return run(reps, args.keep, args.profile)


if __name__ == "__main__":
    sys.exit(main())
