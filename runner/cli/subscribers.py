"""`postwright subscribers list|show|unsuppress|delete`: the subscribers API on the store
`serve` uses, without a running server (docs/subscribers.md).

Like the API, each command first processes the events received before it (in this process
when no `serve` does), so what it shows or changes is up to date.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TextIO

from runner.errors import UsageError

if TYPE_CHECKING:
    from runner.server.api.subscriber_ops import SubscriberOps


def add_subscriber_commands(
    commands: Any, add_repo: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Add `subscribers` and its four actions to the CLI's sub-commands."""
    group = commands.add_parser("subscribers", help="look up, unsuppress or erase subscribers")
    actions = group.add_subparsers(dest="action", required=True)

    listing = actions.add_parser("list", help="subscribers by creation, one page at a time")
    listing.add_argument(
        "--suppressed", metavar="WHICH", help="true, false, or a reason (bounced, complained, …)"
    )
    listing.add_argument("--group", help="only members of this group")
    listing.add_argument("--limit", type=int, default=100, help="1 to 1000 (default 100)")
    listing.add_argument("--cursor", help="continue after the page that printed this cursor")
    listing.add_argument("--format", choices=("text", "json"), default="text")
    add_repo(listing)
    listing.set_defaults(run=_list)

    show = actions.add_parser("show", help="one subscriber, their sends and messages")
    show.add_argument("email")
    show.add_argument("--messages", type=int, default=20, help="recent messages shown")
    show.add_argument("--format", choices=("text", "json"), default="text")
    add_repo(show)
    show.set_defaults(run=_show)

    lift = actions.add_parser("unsuppress", help="lift a hard-bounce or complaint suppression")
    lift.add_argument("email")
    lift.add_argument("--by", help="who lifts it (default: cli:<your user name>)")
    lift.add_argument("--note", help="why (kept with the lift)")
    add_repo(lift)
    lift.set_defaults(run=_unsuppress)

    erase = actions.add_parser("delete", help="erase a person: their data and every copy")
    erase.add_argument("email")
    add_repo(erase)
    erase.set_defaults(run=_delete)


def _with_ops(args: argparse.Namespace, work: Callable[[SubscriberOps], Awaitable[int]]) -> int:
    """Open the store, build the engine's context, run `work`; a refused request exits 1
    (2 for a malformed address), with the API's message."""
    from runner.cli.clocks import clock_from_env
    from runner.cli.settings import settings_of
    from runner.engine.context import EngineContext, unsubscribe_key
    from runner.engine.worker import Worker
    from runner.providers import Providers
    from runner.server.api.models import RequestError
    from runner.server.api.subscriber_ops import SubscriberOps
    from runner.store import open_store

    settings = settings_of(args)
    clock = clock_from_env(os.environ)

    async def run() -> int:
        store = open_store(settings.database_url, clock)
        try:
            key = await unsubscribe_key(settings.unsubscribe_key, store)
            ctx = EngineContext(settings.timezone, settings.public_url, key)
            worker = Worker(store, ctx, clock, Providers())  # processes events; sends nothing
            return await work(SubscriberOps(store, worker, clock))
        except RequestError as error:
            print(f"postwright: error: {error.body.get('message')}", file=sys.stderr)
            return 2 if error.status == 422 else 1
        finally:
            await store.close()

    return asyncio.run(run())


def _list(args: argparse.Namespace, out: TextIO) -> int:
    from runner.core.records import SubscriberQuery
    from runner.server.api.subscriber_views import after_cursor

    if not 1 <= args.limit <= 1000:
        raise UsageError("--limit must be from 1 to 1000")
    suppressed, reason = _which(args.suppressed)

    async def work(ops: SubscriberOps) -> int:
        after = 0 if not args.cursor else after_cursor(args.cursor)
        query = SubscriberQuery(after, args.limit, suppressed, reason, args.group)
        found, cursor = await ops.page(query)
        if args.format == "json":
            print(json.dumps({"subscribers": found, "next_cursor": cursor}, indent=2), file=out)
            return 0
        _print_list(found, cursor, out)
        return 0

    return _with_ops(args, work)


def _show(args: argparse.Namespace, out: TextIO) -> int:
    if not 0 <= args.messages <= 1000:
        raise UsageError("--messages must be from 0 to 1000")

    async def work(ops: SubscriberOps) -> int:
        view = await ops.show(_email(args.email), args.messages)
        if args.format == "json":
            print(json.dumps(view, indent=2), file=out)
        else:
            _print_view(view, out)
        return 0

    return _with_ops(args, work)


def _unsuppress(args: argparse.Namespace, out: TextIO) -> int:
    by = args.by or f"cli:{_user()}"

    async def work(ops: SubscriberOps) -> int:
        email = _email(args.email)
        done = await ops.unsuppress(email, by, args.note)
        lifted = done["lifted"]
        if lifted is None:
            print(f"{email}: not suppressed, nothing to lift", file=out)
        else:
            print(f"{email}: {lifted['reason']} suppression lifted by {by}", file=out)
        return 0

    return _with_ops(args, work)


def _delete(args: argparse.Namespace, out: TextIO) -> int:
    async def work(ops: SubscriberOps) -> int:
        email = _email(args.email)
        done = await ops.erase(email)
        scrubbed = done["scrubbed"]
        print(
            f"{email}: erased ({scrubbed['events']} events, {scrubbed['sends']} sends and "
            f"{scrubbed['messages']} messages scrubbed; counts kept)",
            file=out,
        )
        return 0

    return _with_ops(args, work)


def _email(text: str) -> str:
    from runner.server.api.subscriber_ops import email_of

    return email_of(text)


def _which(text: str | None) -> tuple[bool | None, str | None]:
    from runner.server.api.subscribers import suppressed_filter

    return suppressed_filter(text)


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in this environment (containers)
        return "unknown"


def _print_list(found: list[dict[str, Any]], cursor: str | None, out: TextIO) -> None:
    from rich.table import Table

    from runner.cli.running import console

    table = Table(title="Subscribers (by creation)")
    for column in ("email", "created (UTC)", "groups", "suppression"):
        table.add_column(column)
    for person in found:
        suppression = person["suppression"]
        table.add_row(
            person["email"],
            _when(person["created_at"]),
            ", ".join(person["groups"]),
            "-" if suppression is None else suppression["reason"],
        )
    console(out).print(table)
    if cursor is not None:
        print(f"more: --cursor {cursor}", file=out)


def _print_view(view: dict[str, Any], out: TextIO) -> None:
    from rich.table import Table

    from runner.cli.running import console

    print(f"{view['email']} (created {_when(view['created_at'])} UTC)", file=out)
    print(f"fields: {json.dumps(view['fields'], sort_keys=True)}", file=out)
    print(f"groups: {', '.join(view['groups']) or '-'}", file=out)
    suppression = view["suppression"]
    if suppression is None:
        print("suppression: none", file=out)
    else:
        source = json.dumps(suppression["source"], sort_keys=True)
        print(
            f"suppression: {suppression['reason']} since {suppression['at']} ({source})", file=out
        )
    for lift in view["lifted_suppressions"]:
        note = f": {lift['note']}" if lift["note"] else ""
        print(f"lifted: {lift['reason']} at {lift['lifted_at']} by {lift['by']}{note}", file=out)
    pending = Table(title="Pending sends")
    for column in ("send", "automation", "due at (UTC)", "status"):
        pending.add_column(column)
    for send in view["pending"]:
        pending.add_row(send["id"], send["automation"], _when(send["due_at"]), send["status"])
    messages = Table(title="Recent messages")
    for column in ("message", "sent at (UTC)", "automation", "subject", "status", "events"):
        messages.add_column(column)
    for message in view["messages"]:
        events = ", ".join(event["type"] for event in message["events"])
        messages.add_row(
            message["id"],
            _when(message["sent_at"]),
            message["automation"],
            message["subject"],
            message["status"],
            events or "-",
        )
    screen = console(out)
    screen.print(pending)
    screen.print(messages)


def _when(text: str | None) -> str:
    return "-" if text is None else text.replace("T", " ").removesuffix("Z")[:19]
