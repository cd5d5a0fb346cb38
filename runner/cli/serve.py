"""`postwright serve`: the store, the worker, the reloader and the HTTP server wired together
and run until stopped."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from runner.cli.serve_git import (
    add_git_arguments,
    data_folder,
    first_clone,
    following,
    git_config,
    with_remote_web_url,
)
from runner.cli.settings import load_settings, settings_of

if TYPE_CHECKING:
    from runner.core.clock import Clock
    from runner.core.settings import Settings
    from runner.gitops.follow import Following
    from runner.store.base import Store


def add_serve_command(commands: Any, add_repo: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add serve to the CLI's sub-commands."""
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
    add_git_arguments(serve)
    serve.set_defaults(run=_serve)


def _serve(args: argparse.Namespace, out: TextIO) -> int:
    from runner.server.http_protocol import raise_open_file_limit

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    follow: Following | None = None
    if args.git is not None:
        data = data_folder(args)
        checkout = first_clone(args, data, os.environ)
        settings = load_settings(checkout, os.environ, args.host, args.port, data=data)
        follow = following(args, checkout, git_config(checkout), os.environ)
        settings = with_remote_web_url(settings, follow.remote.url)
    else:
        settings = settings_of(args, args.host, args.port)
    raise_open_file_limit()
    serving = _serve_async(settings, args.access_log, args.poll, args.allow_mass_delete, follow)
    try:  # uvloop when installed (uvicorn's standard extra): a faster event loop
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn installed without its extra
        return asyncio.run(serving)
    return uvloop.run(serving)


async def _serve_async(
    settings: Settings,
    access_log: bool,
    poll: bool,
    allow_mass_delete: bool,
    follow: Following | None = None,
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
            follow,
        )


async def _serve_store(
    settings: Settings,
    store: Store,
    clock: Clock,
    access_log: bool,
    poll: bool,
    allow_mass_delete: bool,
    follow: Following | None = None,
) -> int:
    import uvicorn

    from runner.gitops.follow import GitFollower, SyncOnReload
    from runner.gitops.reload import Reloader
    from runner.server.app import build_worker, create_app
    from runner.server.http_protocol import uvicorn_config

    try:
        worker = await build_worker(settings, store, clock)
        reloader = Reloader(settings, store, worker, clock, allow_mass_delete=allow_mass_delete)
        follower = None
        if follow is None:
            # Start-up applies the files like any reload; the reloader logs each change.
            await reloader.reload(None, reason="startup")
        else:  # fetch, then apply what is new; later fetches run in the app's lifespan
            follower = GitFollower(follow, reloader, store, clock)
            await follower.start()
        app = create_app(
            settings,
            store,
            worker,
            clock,
            reloader=reloader if follower is None else SyncOnReload(follower),
            watch=follower is None,
            poll=poll,
            git=follower,
        )
        await uvicorn.Server(uvicorn_config(app, settings, access_log=access_log)).serve()
    finally:
        await store.close()
    return 0
