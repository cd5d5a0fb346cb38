"""`postwright simulate SCENARIO...`: scenario files run on the real engine with a fake clock
(docs/simulate.md)."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO


def add_simulate_command(
    commands: Any, add_repo: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Add simulate to the CLI's sub-commands."""
    simulate = commands.add_parser(
        "simulate", help="run scenario files on the engine with a fake clock"
    )
    simulate.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help="scenario files (default: scenarios/)"
    )
    simulate.add_argument("--format", choices=("text", "json", "github"), default="text")
    add_repo(simulate)
    simulate.set_defaults(run=_simulate)


def _simulate(args: argparse.Namespace, out: TextIO) -> int:
    from runner.gitops.reload import apply_repository
    from runner.repo.workspace import repo_root
    from runner.simulation import report
    from runner.simulation.session import CannotRun, load_all, run_all, scenario_files

    root = repo_root(args.repo)
    try:
        loaded = load_all(root, scenario_files(root, args.scenarios))
    except CannotRun as cannot:
        report.render_problems(cannot.problems, args.format, out)
        return 2
    # The runner's own apply: the files reach the store exactly as `serve` applies them.
    outcomes = asyncio.run(run_all(root, loaded, apply_repository))
    if args.format == "json":
        report.render_json(outcomes, out)
    elif args.format == "github":
        report.render_github(outcomes, out)
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            with Path(summary).open("a", encoding="utf-8") as file:
                file.write(report.summary_markdown(outcomes))
    else:
        report.render_text(outcomes, out)
    return 0 if all(outcome.passed for outcome in outcomes) else 1
