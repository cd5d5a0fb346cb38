"""`postwright render`: one email of an automation on disk previewed offline, rendered the way
the sender renders it (in a render worker under its limits)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from runner.checking.tree import check_working_tree
from runner.cli.running import print_email
from runner.cli.settings import settings_of
from runner.core.layout import AUTOMATIONS_DIR
from runner.errors import UsageError
from runner.repo.workspace import repo_root

if TYPE_CHECKING:
    from runner.core.model import Automation


def add_render_command(commands: Any, add_repo: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add render to the CLI's sub-commands."""
    render = commands.add_parser("render", help="preview an email offline")
    render.add_argument("id", help="the automation (read from the files on disk)")
    render.add_argument("--subscriber", type=Path, required=True, metavar="FILE")
    render.add_argument("--event", type=Path, metavar="FILE")
    add_repo(render)
    render.set_defaults(run=_render)


def _render(args: argparse.Namespace, out: TextIO) -> int:
    from runner.core.records import Subscriber
    from runner.templating.render import RenderError, RenderUnavailable, email_job
    from runner.templating.renderpool import RenderPool

    root = repo_root(args.repo)
    tree = check_working_tree(root, datetime.now(UTC))
    version = tree.versions.get(args.id)
    if version is None:
        problems = [
            f for f in tree.findings if f.automation == args.id or Path(f.path).stem == args.id
        ]
        detail = "".join(f"\n  {f.path}:{f.line}:{f.col}: {f.message}" for f in problems)
        raise UsageError(f"no valid automation {args.id!r} in {root / AUTOMATIONS_DIR}{detail}")
    person = _data_file(args.subscriber)
    if not isinstance(person.get("email"), str):
        raise UsageError(f"{args.subscriber}: needs an `email`")
    subscriber = Subscriber(
        id=None,
        email=person["email"].strip().lower(),
        fields=dict(person.get("fields") or {}),
        groups=set(person.get("groups") or []),
    )
    event = _data_file(args.event) if args.event else _default_event(version.model)
    event.setdefault("data", {})
    url = f"{settings_of(args).public_url}/u/preview-token"
    # The same guarded path as the sender: a render worker with its CPU and memory limits.
    pool = RenderPool(size=1)
    try:
        (email,) = pool.render(
            [email_job(version.model, version.templates, subscriber, event, url)]
        )
    except RenderError as error:
        email = error
    finally:
        pool.close()
    if isinstance(email, RenderUnavailable):
        raise email
    if isinstance(email, RenderError):
        print(f"postwright: render error: {email}", file=sys.stderr)
        return 1
    print_email(email.subject, email.headers, email.text, email.html, out)
    return 0


def _data_file(path: Path) -> dict[str, Any]:
    """A JSON or YAML mapping from a file."""
    import yaml

    try:
        value = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{path}: expected a mapping")
    return value


def _default_event(model: Automation) -> dict[str, Any]:
    trigger = model.trigger
    name = getattr(trigger, "event", None) or trigger.type
    return {"name": name, "data": {}}
