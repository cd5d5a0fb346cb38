"""A real runner for tests: the app under uvicorn on 127.0.0.1 in a background thread.

SQLite file under the temp repo, a FakeClock the test moves, and `drain()` to run
the engine from the test thread. Every wait is bounded; `close()` (or leaving the
`with` block) stops the server and closes the store.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
import uvicorn
from starlette.applications import Starlette

from runner.checking.tree import check_working_tree
from runner.cli.settings import load_settings
from runner.core.clock import FakeClock
from runner.core.settings import Settings
from runner.engine.apply import ApplyReport
from runner.engine.worker import Worker
from runner.server.app import create_app, prepare
from runner.server.http_protocol import uvicorn_config
from runner.store import open_store
from runner.store.base import ReadTx, Store, WriteTx

T = TypeVar("T")

# Set by tests/conftest.py when POSTWRIGHT_TEST_STORE=postgres: repository -> database URL.
STORE_DATABASES: Callable[[Path], str] | None = None
TIMEOUT = 15.0
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday

WELCOME = """\
id: welcome
status: running
trigger:
  type: event
  event: subscriber.added
email:
  from: "Shop <news@shop.test>"
  subject: "Welcome {{ subscriber.fields.name | default('friend') }}"
  text: "Hello {{ subscriber.email }}"
"""


def write_repo(repo: Path, automations: Mapping[str, str], config: str | None = None) -> Path:
    """Write automation files (id -> YAML) and an optional postwright.yaml under `repo`."""
    folder = repo / "automations"
    folder.mkdir(parents=True, exist_ok=True)
    for ident, text in automations.items():
        (folder / f"{ident}.yaml").write_text(text, encoding="utf-8")
    if config is not None:
        (repo / "postwright.yaml").write_text(config, encoding="utf-8")
    return repo


class Harness:
    """One running app over one temp repo."""

    def __init__(
        self,
        repo: Path,
        *,
        environ: Mapping[str, str] | None = None,
        start: datetime = START,
        background: bool = False,
        commit: str | None = None,
    ) -> None:
        self.repo = repo
        self.commit = commit  # the commit start-up records as applied (none: not from git)
        self.clock = FakeClock(start)
        variables = dict(environ or {})
        if STORE_DATABASES is not None and "POSTWRIGHT_DATABASE_URL" not in variables:
            # The scenarios on PostgreSQL: one database per repository, so a restart (a new
            # Harness on the same repository) finds the state it left.
            variables["POSTWRIGHT_DATABASE_URL"] = STORE_DATABASES(repo)
        self.settings: Settings = load_settings(repo, variables)
        self.background = background
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._server: uvicorn.Server | None = None
        self.store: Store | None = None
        self.worker: Worker | None = None
        self.report: ApplyReport | None = None
        self.app: Starlette | None = None
        self._thread = threading.Thread(target=self._run, name="harness-server", daemon=True)
        self.http = httpx.Client(base_url=self.url, timeout=TIMEOUT)

    def __enter__(self) -> Harness:
        self._thread.start()
        if not self._ready.wait(TIMEOUT):
            raise TimeoutError("the server did not start in time")
        if self._error is not None:
            raise RuntimeError("the server failed to start") from self._error
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as error:  # reported to the test thread
            self._error = error
            self._ready.set()
        finally:
            self._loop.close()

    async def _main(self) -> None:
        store = open_store(self.settings.database_url, self.clock)
        self.store = store
        try:
            tree = check_working_tree(self.repo, self.clock.now())
            self.worker, self.report = await prepare(
                self.settings, store, self.clock, tree, self.commit
            )
            self.app = create_app(
                self.settings, store, self.worker, self.clock, background=self.background
            )
            # The server `serve` runs: its protocol, timeouts and connection cap.
            config = uvicorn_config(self.app, self.settings, log_level="warning")
            self._server = uvicorn.Server(config)
            serving = asyncio.create_task(self._server.serve(sockets=[self._sock]))
            while not self._server.started and not serving.done():
                await asyncio.sleep(0.005)
            self._ready.set()
            await serving
        finally:
            await store.close()

    def close(self) -> None:
        """Stop the server and wait for its thread (bounded)."""
        self.http.close()
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(TIMEOUT)
        self._sock.close()
        if self._thread.is_alive():
            raise TimeoutError("the server did not stop in time")

    # --- driving the runner from the test thread -----------------------------------

    def call(self, make: Callable[[], Any]) -> Any:
        """Run a coroutine (made by `make`, on the server's loop) and return its result."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(_awaited(make), self._loop)
        return future.result(TIMEOUT)

    def start(self, make: Callable[[], Any]) -> Future[Any]:
        """Start a coroutine (made by `make`) on the server's loop without waiting for it."""
        return asyncio.run_coroutine_threadsafe(_awaited(make), self._loop)

    def drain(self) -> int:
        """Run the engine until it has nothing left to do."""
        worker = self.worker
        assert worker is not None
        result: int = self.call(worker.drain)
        return result

    def read(self, work: Callable[[ReadTx], T]) -> T:
        """A read transaction on the store."""
        store = self.store
        assert store is not None
        result: T = self.call(lambda: store.read(work))
        return result

    def write(self, work: Callable[[WriteTx], T]) -> T:
        """A write transaction on the store."""
        store = self.store
        assert store is not None
        result: T = self.call(lambda: store.write(work))
        return result

    def advance(self, delta: timedelta) -> None:
        """Move the fake clock."""
        self.clock.advance(delta)

    def post_event(
        self,
        event_type: str,
        email: str,
        *,
        event_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> httpx.Response:
        """POST one event to /v1/events."""
        body: dict[str, Any] = {
            "id": event_id or f"{event_type}-{email}-{self.clock.now().timestamp()}",
            "type": event_type,
            "subscriber": {"email": email, **extra.pop("subscriber", {})},
            **extra,
        }
        return self.http.post("/v1/events", json=body, headers=dict(headers or {}))


async def _awaited(make: Callable[[], Any]) -> Any:
    return await make()
