"""The commands that look at a runner's store: stats, pending and outbox (README.md "The command
line").

Heavy imports (the server, the store, rich) stay inside the commands, so
`validate` starts fast.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from runner.cli.settings import settings_of
from runner.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from runner.core.clock import Clock
    from runner.store.base import ReadTx, Stats, Store


def add_runner_commands(commands: Any, add_repo: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add stats, pending and outbox to the CLI's sub-commands."""
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


def print_email(
    subject: str, headers: Mapping[str, str], text: str | None, html: str | None, out: TextIO
) -> None:
    """An email as the outbox and render commands show it: subject, headers, then each body."""
    print(f"Subject: {subject}", file=out)
    for name, value in sorted(headers.items()):
        print(f"{name}: {value}", file=out)
    for label, body in (("text", text), ("html", html)):
        if body is not None:
            print(f"\n--- {label} ---\n{body}", file=out)


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
            print(f"To: {message.to}\nFrom: {message.from_}", file=out)
            print_email(message.subject, message.headers, message.text, message.html, out)
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
