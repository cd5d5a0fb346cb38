"""The checking commands: validate, plan and schema (docs/output-formats.md).

They read the repository and never open the store, so they start fast; `--against URL`
compares the working tree with what a running runner has applied.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from runner.checking import report
from runner.checking.bases import Base
from runner.checking.tree import Tree, check_working_tree
from runner.cli.scope import base_of, from_top, only, require_automations, wanted_paths
from runner.core.findings import Finding, Severity
from runner.errors import UsageError
from runner.repo.workspace import Project, find_project

if TYPE_CHECKING:
    from runner.checking.plan import Plan


def add_checking_commands(
    commands: Any, add_repo: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Add validate, plan and schema to the CLI's sub-commands."""
    validate = commands.add_parser("validate", help="check files, cross-file and lifecycle rules")
    validate.add_argument("paths", nargs="*", help="report findings only for these files")
    _add_common(validate, add_repo)
    validate.add_argument("--format", choices=("text", "json", "github"), default="text")
    validate.add_argument("--strict", action="store_true", help="warnings fail too")
    validate.set_defaults(run=_validate)

    plan = commands.add_parser("plan", help="show what a change does to each automation")
    _add_common(plan, add_repo)
    plan.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    plan.set_defaults(run=_plan)

    schema = commands.add_parser("schema", help="print the JSON Schema of automation files")
    schema.add_argument(
        "--scenario", action="store_true", help="the schema of `simulate` scenario files instead"
    )
    schema.set_defaults(run=_schema)


def _add_common(
    command: argparse.ArgumentParser, add_repo: Callable[[argparse.ArgumentParser], None]
) -> None:
    command.add_argument(
        "--base",
        metavar="REF",
        help="check every commit since REF, then the working tree; `auto`: the refs of a "
        "pre-commit push, else the upstream, else the merge base with origin's default branch",
    )
    command.add_argument(
        "--now", metavar="T", type=_instant, help="judge times at this RFC 3339 instant"
    )
    add_repo(command)
    command.add_argument(
        "--against",
        metavar="URL",
        help="compare the working tree with what the runner at URL has applied "
        "(API key from $POSTWRIGHT_API_KEY)",
    )


def _against(args: argparse.Namespace) -> tuple[str, str | None] | None:
    """The runner URL and API key of --against, or None; --base cannot be combined with it."""
    if not args.against:
        return None
    if args.base:
        raise UsageError("--against compares the working tree with a runner: drop --base")
    from runner.checking.runner_client import API_KEY_ENV

    return args.against, os.environ.get(API_KEY_ENV) or None


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 instant") from error
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset")
    return value.astimezone(UTC)


def _validate(args: argparse.Namespace, out: TextIO) -> int:
    project = find_project(args.repo, args.paths)
    root = project.root
    now = args.now or datetime.now(UTC)
    against = _against(args)
    earlier: set[Finding] = set()  # findings HEAD no longer carries: summary only
    trees: list[Tree] = []
    if against is not None:
        from runner.checking.against import check_against, fetch_deployed
        from runner.checking.runner_client import RunnerClient

        require_automations(project)
        with RunnerClient(*against) as client:
            deployed = fetch_deployed(client)
        result = check_against(root, deployed, now)
        found, tree = result.findings, result.tree
    elif args.base:
        from runner.checking.walk import walk_history

        base = base_of(project, args.base)
        assert base is not None
        history = walk_history(root, base.ref, now, base.head)
        found, tree = history.findings, history.final_tree
        trees = [history.base_tree]
        require_automations(project, tree, *trees)
        earlier = {f for f in found if not history.carried_at_head(f)}
    else:
        require_automations(project)
        tree = check_working_tree(root, now)
        found = tree.findings
    if args.paths:
        known = {p for t in (tree, *trees) for p in t.snapshot.paths()}
        found = only(found, wanted_paths(project, args.paths, known, tree.template_users))
    found = sorted(found, key=lambda f: f.sort_key)
    summary = os.environ.get("GITHUB_STEP_SUMMARY") if args.format == "github" else None
    failing = [f for f in found if f.severity is Severity.ERROR or args.strict]
    shown = from_top(project, found)
    hidden = {s for f, s in zip(found, shown, strict=True) if f in earlier}
    report.render(
        shown,
        args.format,
        out,
        summary_path=Path(summary) if summary else None,
        annotate=lambda f: f not in hidden,
    )
    return 1 if failing else 0


def _plan(args: argparse.Namespace, out: TextIO) -> int:
    project = find_project(args.repo)
    now = args.now or datetime.now(UTC)
    against = _against(args)
    if against is not None:
        require_automations(project)
        url, key = against
        return _plan_against(project, url, key, now, args.format, out)
    return _plan_history(project, base_of(project, args.base), now, args.format, out)


def _plan_history(project: Project, base: Base | None, now: datetime, fmt: str, out: TextIO) -> int:
    """Walk the history from `base` (or HEAD to the working tree), print the plan.

    Returns 1 when any change is blocked, else 0.
    """
    from runner.checking.plan import build_plan
    from runner.checking.plan_render import render_plan
    from runner.checking.walk import walk_history

    if base is None:
        require_automations(project)
    ref, head = (base.ref, base.head) if base is not None else (None, None)
    result = walk_history(project.root, ref, now, head)
    require_automations(project, result.base_tree, result.final_tree)
    plan = build_plan(
        result.net_changes,
        result.repairs.steps_view(result.steps),
        base=result.base_tree.snapshot.commit or ref,
        head=result.final_tree.snapshot.commit,
        findings=result.findings,
        known_ids=result.base_tree.versions.keys() | result.final_tree.versions.keys(),
    )
    render_plan(_plan_from_top(project, plan), fmt, out)
    return 1 if plan.blocked else 0


def _plan_from_top(project: Project, plan: Plan) -> Plan:
    """The plan with file paths from the work tree's top."""
    if not project.prefix:
        return plan

    def top(path: str | None) -> str | None:
        return project.from_top(path) if path is not None else None

    entries = tuple(
        replace(e, old_path=top(e.old_path), new_path=top(e.new_path)) for e in plan.entries
    )
    return replace(plan, entries=entries)


def _plan_against(
    project: Project, url: str, api_key: str | None, now: datetime, fmt: str, out: TextIO
) -> int:
    """The working tree against what the runner at `url` has applied, with runtime impact.

    Returns 1 when any change is blocked, else 0.
    """
    from runner.checking.against import check_against, fetch_deployed, impact_of
    from runner.checking.plan import build_plan
    from runner.checking.plan_render import render_plan
    from runner.checking.runner_client import RunnerClient

    with RunnerClient(url, api_key) as client:
        deployed = fetch_deployed(client)
        result = check_against(project.root, deployed, now)
        plan = build_plan(
            result.changes,
            [],
            base=None,
            head=None,
            findings=result.findings,
            known_ids=deployed.versions.keys() | result.children.keys(),
        )
        changes = {change.id: change for change in result.changes}
        entries = tuple(
            replace(entry, impact=impact_of(changes[entry.id], client, now))
            if entry.id in changes
            else entry
            for entry in plan.entries
        )
    plan = replace(plan, entries=entries, against=client.url)
    render_plan(_plan_from_top(project, plan), fmt, out)
    return 1 if plan.blocked else 0


def _schema(args: argparse.Namespace, out: TextIO) -> int:
    if args.scenario:
        from runner.simulation.schema import scenario_schema_text

        out.write(scenario_schema_text())
        return 0
    from runner.core.schema import schema_text

    out.write(schema_text())
    return 0
