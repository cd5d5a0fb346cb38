"""The runner's commands: serve, stats, pending, outbox and render (README.md "The command line").

Heavy imports (the server, the store, rich) stay inside the commands, so
`validate` starts fast.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from runner.checking.tree import check_working_tree
from runner.cli.subscribers import add_subscriber_commands
from runner.core.layout import AUTOMATIONS_DIR
from runner.errors import UsageError
from runner.repo.workspace import repo_root

if TYPE_CHECKING:
    from rich.console import Console

    from runner.core.clock import Clock
    from runner.core.model import Automation
    from runner.core.settings import Settings
    from runner.store.base import ReadTx, Stats, Store


def add_runner_commands(commands: Any, add_repo: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add serve, stats, pending, outbox, render and subscribers to the CLI's sub-commands."""
    serve = commands.add_parser("serve", help="run the runner: HTTP API, engine and sender")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--access-log", action="store_true", help="log every HTTP request (off: it costs ~20%%)"
    )
    serve.add_argument(
        "--poll",
        action="store_true",
        help="poll the files for changes (network mounts, volumes without notifications)",
    )
    serve.add_argument(
        "--allow-mass-delete",
        action="store_true",
        help="apply a reload that deletes more than half of the automations at once",
    )
    add_repo(serve)
    serve.set_defaults(run=_serve)

    stats = commands.add_parser("stats", help="counts and rates per automation")
    stats.add_argument("id", nargs="?", help="one automation (default: all)")
    add_repo(stats)
    stats.set_defaults(run=_stats)

    pending = commands.add_parser("pending", help="list, send now or remove pending sends")
    pending.add_argument("id", help="the automation")
    action = pending.add_mutually_exclusive_group()
    action.add_argument("--send-now", metavar="SEND_ID")
    action.add_argument("--remove", metavar="SEND_ID")
    add_repo(pending)
    pending.set_defaults(run=_pending)

    outbox = commands.add_parser("outbox", help="messages stored by the outbox provider")
    outbox.add_argument("--limit", type=int, default=20)
    outbox.add_argument("--show", metavar="MESSAGE_ID", help="print one message in full")
    add_repo(outbox)
    outbox.set_defaults(run=_outbox)

    render = commands.add_parser("render", help="preview an email offline")
    render.add_argument("id", help="the automation (read from the files on disk)")
    render.add_argument("--subscriber", type=Path, required=True, metavar="FILE")
    render.add_argument("--event", type=Path, metavar="FILE")
    add_repo(render)
    render.set_defaults(run=_render)
    add_subscriber_commands(commands, add_repo)


def settings_of(args: argparse.Namespace, host: str = "127.0.0.1", port: int = 8080) -> Settings:
    """The runner settings of the repository named by `--repo` (default: here)."""
    from runner.cli.settings import load_settings

    return load_settings(repo_root(args.repo), os.environ, host, port)


def _serve(args: argparse.Namespace, out: TextIO) -> int:
    from runner.server.http_protocol import raise_open_file_limit

    settings = settings_of(args, args.host, args.port)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise_open_file_limit()
    serving = _serve_async(settings, args.access_log, args.poll, args.allow_mass_delete)
    try:  # uvloop when installed (uvicorn's standard extra): a faster event loop
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn installed without its extra
        return asyncio.run(serving)
    return uvloop.run(serving)


async def _serve_async(
    settings: Settings, access_log: bool, poll: bool, allow_mass_delete: bool
) -> int:
    from runner.cli.clocks import clock_from_env
    from runner.store import open_store, single_runner

    clock = clock_from_env(os.environ)
    with single_runner(settings.database_url):
        return await _serve_store(
            settings,
            open_store(settings.database_url, clock, settings.store),
            clock,
            access_log,
            poll,
            allow_mass_delete,
        )


async def _serve_store(
    settings: Settings,
    store: Store,
    clock: Clock,
    access_log: bool,
    poll: bool,
    allow_mass_delete: bool,
) -> int:
    import uvicorn

    from runner.gitops.reload import Reloader
    from runner.server.app import build_worker, create_app
    from runner.server.http_protocol import uvicorn_config

    try:
        worker = await build_worker(settings, store, clock)
        reloader = Reloader(settings, store, worker, clock, allow_mass_delete=allow_mass_delete)
        # Start-up applies the files like any reload; the reloader logs each change.
        await reloader.reload(None, reason="startup")
        app = create_app(settings, store, worker, clock, reloader=reloader, poll=poll)
        await uvicorn.Server(uvicorn_config(app, settings, access_log=access_log)).serve()
    finally:
        await store.close()
    return 0


def _with_store(args: argparse.Namespace, work: Callable[[Store, Clock], Awaitable[int]]) -> int:
    from runner.cli.clocks import clock_from_env
    from runner.store import open_store

    settings = settings_of(args)
    clock = clock_from_env(os.environ)

    # A short command skips the integrity check: it reads the whole file, and `serve` ran it.
    options = dataclasses.replace(settings.store, integrity_check=False)

    async def run() -> int:
        store = open_store(settings.database_url, clock, options)
        try:
            return await work(store, clock)
        finally:
            await store.close()

    return asyncio.run(run())


def console(out: TextIO) -> Console:
    """A rich console on `out`, wide and plain (no highlighting), for tables."""
    from rich.console import Console

    return Console(file=out, width=140, soft_wrap=False, highlight=False)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _stats(args: argparse.Namespace, out: TextIO) -> int:
    from rich.table import Table

    from runner.engine.catalog import Catalog
    from runner.server.api.operations import started

    async def work(store: Store, clock: Clock) -> int:
        def read(tx: ReadTx) -> list[tuple[str, str, Stats | None]]:
            catalog = Catalog.build(tx.automations(), tx.status_changes())
            ids = [args.id] if args.id else sorted(catalog.by_id)
            rows: list[tuple[str, str, Stats | None]] = []
            for ident in ids:
                live = catalog.by_id.get(ident)
                if live is None:
                    raise UsageError(f"no applied automation {ident!r}")
                status = live.status_at(clock.now()) or live.row.status
                rows.append((ident, status, tx.stats(ident) if started(live) else None))
            return rows

        rows = await store.read(read)
        table = Table(title="Automations" if not args.id else f"Stats of {args.id}")
        columns = (
            "automation",
            "status",
            "triggered",
            "pending",
            "sent",
            "delivered",
            "opened",
            "clicked",
            "open rate",
            "click rate",
            "bounced",
            "failed",
            "cancelled",
        )
        for column in columns:
            table.add_column(column, justify="left" if column in columns[:2] else "right")
        for ident, status, stats in rows:
            if stats is None:
                table.add_row(ident, status, *(["-"] * (len(columns) - 2)))
                continue
            cancelled = ", ".join(f"{k} {v}" for k, v in sorted(stats.cancelled.items()))
            table.add_row(
                ident,
                status,
                str(stats.triggered),
                str(stats.pending),
                str(stats.sent),
                str(stats.delivered),
                str(stats.opened),
                str(stats.clicked),
                _rate(stats.open_rate),
                _rate(stats.click_rate),
                str(stats.bounced_hard + stats.bounced_soft),
                str(stats.failed),
                cancelled or "0",
            )
        console(out).print(table)
        if not rows:
            print("no automations applied yet (run `postwright serve` once)", file=out)
        return 0

    return _with_store(args, work)


def _pending(args: argparse.Namespace, out: TextIO) -> int:
    from rich.table import Table

    from runner.server.api.models import RequestError
    from runner.server.api.operations import ACTIVE, remove_pending, send_now

    async def work(store: Store, clock: Clock) -> int:
        applied = await store.read(lambda tx: tx.automation(args.id))
        if applied is None:
            raise UsageError(f"no applied automation {args.id!r}")
        now = clock.now()
        try:
            if args.send_now:
                await store.write(lambda tx: send_now(tx, args.id, args.send_now, now))
                print(f"{args.send_now}: due now (a running `serve` sends it)", file=out)
                return 0
            if args.remove:
                await store.write(lambda tx: remove_pending(tx, args.id, args.remove, now))
                print(f"{args.remove}: removed", file=out)
                return 0
        except RequestError as error:
            print(f"postwright: error: {error.body.get('message')}", file=sys.stderr)
            return 1
        sends = await store.read(lambda tx: tx.pending_sends(args.id, ACTIVE, 1000))
        table = Table(title=f"Pending sends of {args.id}")
        for column in ("send", "email", "due at (UTC)", "status", "repeat"):
            table.add_column(column)
        for send in sends:
            due = send.due_at.strftime("%Y-%m-%d %H:%M:%S")
            table.add_row(send.id, send.email, due, send.status.value, str(send.repeat_index))
        console(out).print(table)
        return 0

    return _with_store(args, work)


def _outbox(args: argparse.Namespace, out: TextIO) -> int:
    from rich.table import Table

    from runner.server.api.operations import outbox

    if not 1 <= args.limit <= 1000:
        raise UsageError("--limit must be from 1 to 1000")

    async def work(store: Store, clock: Clock) -> int:
        if args.show:
            message = await store.read(lambda tx: tx.message(args.show))
            if message is None:
                raise UsageError(f"no message {args.show!r}")
            print(f"To: {message.to}\nFrom: {message.from_}\nSubject: {message.subject}", file=out)
            for name, value in sorted(message.headers.items()):
                print(f"{name}: {value}", file=out)
            for label, body in (("text", message.text), ("html", message.html)):
                if body is not None:
                    print(f"\n--- {label} ---\n{body}", file=out)
            return 0
        messages = await store.read(lambda tx: outbox(tx, args.limit))
        table = Table(title="Outbox (newest first)")
        for column in ("message", "sent at (UTC)", "to", "automation", "subject"):
            table.add_column(column)
        for m in messages:
            sent = m.sent_at.strftime("%Y-%m-%d %H:%M:%S")
            table.add_row(m.id, sent, m.to, m.automation_id, m.subject)
        console(out).print(table)
        return 0

    return _with_store(args, work)


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
    print(f"Subject: {email.subject}", file=out)
    for name, value in sorted(email.headers.items()):
        print(f"{name}: {value}", file=out)
    for label, body in (("text", email.text), ("html", email.html)):
        if body is not None:
            print(f"\n--- {label} ---\n{body}", file=out)
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
