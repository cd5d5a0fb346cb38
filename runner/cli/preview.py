"""`postwright preview`: a change's emails rendered, screenshotted and described for review,
and `preview ID --send-to ADDRESS`, a test send through the configured provider
(docs/preview.md)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from runner.errors import UsageError
from runner.repo.workspace import repo_root

TEST_PREFIX = "[TEST] "


def add_preview_command(commands: Any, add_repo: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add preview to the CLI's sub-commands."""
    preview = commands.add_parser(
        "preview", help="render the emails of a change for review, or send one as a test"
    )
    preview.add_argument("id", nargs="?", help="with --send-to: the automation to send")
    preview.add_argument(
        "--base", metavar="REF", help="every automation changed since REF (default: uncommitted)"
    )
    preview.add_argument("--out", type=Path, metavar="DIR", help="the folder to write")
    preview.add_argument("--send-to", metavar="ADDRESS", help="send ID's email as a test")
    preview.add_argument("--no-screenshots", action="store_true", help="skip the PNG screenshots")
    preview.add_argument("--now", metavar="T", help="judge times at this RFC 3339 instant")
    add_repo(preview)
    preview.set_defaults(run=_preview)


def _preview(args: argparse.Namespace, out: TextIO) -> int:
    now = _instant(args.now) if args.now else datetime.now(UTC)
    if args.send_to or args.id:
        if not (args.send_to and args.id):
            raise UsageError("a test send needs both ID and --send-to ADDRESS")
        if args.out or args.base:
            raise UsageError("--send-to sends one email: drop --out and --base")
        return _send_test(args, now, out)
    if args.out is None:
        raise UsageError("preview needs --out DIR (or ID --send-to ADDRESS)")
    return _write_preview(args, now, out)


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--now: {text!r} is not an RFC 3339 instant") from None
    if value.tzinfo is None:
        raise UsageError(f"--now: {text!r} has no UTC offset")
    return value.astimezone(UTC)


def _write_preview(args: argparse.Namespace, now: datetime, out: TextIO) -> int:
    from runner.cli.settings import settings_of
    from runner.review.preview import INDEX, build_preview
    from runner.review.screenshot import Screenshots

    root = repo_root(args.repo)
    public_url = settings_of(args).public_url
    target = args.out if args.out.is_absolute() else Path.cwd() / args.out
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {target}: {error.strerror or error}") from None
    if args.no_screenshots:
        preview = build_preview(root, args.base, target, now, public_url)
    else:
        with Screenshots() as shots:
            if shots.unavailable is not None:
                print(f"postwright: {shots.unavailable}", file=sys.stderr)

            def shoot(html: str, png: Path) -> str | None:
                if shots.unavailable is not None:
                    return shots.unavailable
                shots.take(html, png)
                return None

            preview = build_preview(root, args.base, target, now, public_url, shoot)
    failed = [item.id for item in preview.items if any("render error" in n for n in item.notes)]
    count = len(preview.items)
    out.write(f"{count} automation{'s' if count != 1 else ''} previewed: {target / INDEX}\n")
    for ident in failed:
        out.write(f"render error in {ident}: see {target / INDEX}\n")
    return 1 if failed else 0


def _send_test(args: argparse.Namespace, now: datetime, out: TextIO) -> int:
    from runner.checking.tree import check_working_tree
    from runner.cli.settings import settings_of
    from runner.providers import OutgoingMessage, ProviderError, build_providers
    from runner.review.preview import render_version
    from runner.templating.render import RenderError
    from runner.templating.renderpool import RenderPool

    address = args.send_to.strip()
    if "@" not in address.strip("@") or any(c.isspace() for c in address):
        raise UsageError(f"--send-to: {args.send_to!r} is not an email address")
    root = repo_root(args.repo)
    settings = settings_of(args)
    tree = check_working_tree(root, now)
    version = tree.versions.get(args.id)
    if version is None:
        raise UsageError(f"no valid automation {args.id!r} in {root / 'automations'}")
    name = version.model.provider
    kind = settings.config.providers[name].type if name in settings.config.providers else None
    if kind is None:
        raise UsageError(f"provider {name!r} is not declared in postwright.yaml")
    if kind == "outbox":
        raise UsageError(
            f"provider {name!r} is the outbox, which keeps messages only inside `serve`: "
            "declare a real provider in postwright.yaml to send a test"
        )
    pool = RenderPool(size=1)
    try:
        rendered = render_version(version, tree.snapshot, now, settings.public_url, pool)
    finally:
        pool.close()
    email = rendered.email
    if isinstance(email, RenderError):
        print(f"postwright: render error: {email}", file=sys.stderr)
        return 1
    test_id = f"test-{uuid.uuid4().hex}"
    message = OutgoingMessage(
        send_id=test_id,
        message_id=test_id,
        to=address,
        from_=version.model.email.from_,
        reply_to=version.model.email.reply_to,
        subject=TEST_PREFIX + email.subject,
        html=email.html,
        text=email.text,
        headers=dict(email.headers),
        tags=["postwright-test"],
    )

    async def send() -> str:
        providers = build_providers(settings)
        try:
            return (await providers[name].send(message)).provider_message_id
        finally:
            await providers.aclose()

    try:
        provider_id = asyncio.run(send())
    except ProviderError as error:
        print(f"postwright: {name} refused the test send: {error.message}", file=sys.stderr)
        return 1
    out.write(
        f"sent a test of {args.id} to {message.to} through {name} ({kind}): "
        f"{message.subject!r}, provider id {provider_id}; nothing was recorded\n"
    )
    return 0
