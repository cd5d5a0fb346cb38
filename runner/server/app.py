"""The HTTP API of `postwright serve` on Starlette: routes, lifespan, start-up.

Handlers live in runner.server.api (events, automations, public); engine work runs in store
transactions with the worker's catalog. The lifespan runs the worker loop and, when a
reloader is given, the file watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from runner.checking.tree import Tree
from runner.core.clock import Clock
from runner.core.settings import Settings
from runner.engine import startup
from runner.engine.apply import ApplyReport
from runner.engine.shared_rate import SharedRateLimiter
from runner.engine.worker import Worker
from runner.gitops.follow import GitFollower
from runner.gitops.reload import Reloading, apply_repository
from runner.providers import build_providers
from runner.server.api.automations import AutomationsApi
from runner.server.api.base import MAX_BODY, STORE_RETRY_AFTER, guard, store_unavailable
from runner.server.api.events import EventsApi
from runner.server.api.gate import INGEST_PATH, Gate
from runner.server.api.git import GitApi
from runner.server.api.operations import (
    ACTIVE,
    outbox,
    remove_pending,
    send_now,
    started,
    stats_payload,
)
from runner.server.api.public import PublicApi
from runner.server.api.subscribers import SubscribersApi
from runner.server.metrics import GitMetrics, Metrics
from runner.server.ui.automations import AutomationPages
from runner.server.ui.people import PeoplePages
from runner.server.ui.routes import ui_routes
from runner.store import POSTGRES_PREFIX
from runner.store.base import Store
from runner.store.errors import StoreUnavailable

__all__ = [
    "ACTIVE",
    "INGEST_PATH",
    "MAX_BODY",
    "apply_repository",
    "build_worker",
    "create_app",
    "outbox",
    "prepare",
    "remove_pending",
    "send_now",
    "started",
    "stats_payload",
]

log = logging.getLogger("postwright.server")

STOP_TIMEOUT = 30.0
WATCH_START_TIMEOUT = 10.0


async def build_worker(settings: Settings, store: Store, clock: Clock) -> Worker:
    """The unsubscribe key, the providers and the worker (nothing applied), with metrics."""
    providers = build_providers(settings)
    if settings.database_url.startswith(POSTGRES_PREFIX):
        # Replicas share one PostgreSQL: a provider's rate limit holds across all of them.
        shared = {
            name: SharedRateLimiter(rate, name, store, clock)
            for name, config in settings.config.providers.items()
            if (rate := getattr(config, "rate_limit", None)) is not None
            and name in providers.limiters
        }
        providers = providers.with_limiters(shared)
    return await startup.build_worker(
        store,
        clock,
        providers,
        timezone=settings.timezone,
        public_url=settings.public_url,
        configured_key=settings.unsubscribe_key,
        event_id_retention=timedelta(seconds=settings.event_id_retention),
        metrics=Metrics(),
    )


async def prepare(
    settings: Settings, store: Store, clock: Clock, tree: Tree, commit: str | None = None
) -> tuple[Worker, ApplyReport]:
    """Start-up without a reloader: the worker, and `tree` applied as it is."""
    worker = await build_worker(settings, store, clock)
    report = await apply_repository(store, tree, clock.now(), commit)
    return worker, report


class _AddressConvertor(PathConvertor):
    """Starlette's `path`, line breaks included: an address holding an encoded line break
    reaches the handler, which refuses it with a 422 naming `email`, instead of falling
    through the router as a plain-text 404 (`.` does not match a line break)."""

    regex = "(?s:.*)"


register_url_convertor("address", _AddressConvertor())


def create_app(
    settings: Settings,
    store: Store,
    worker: Worker,
    clock: Clock,
    *,
    background: bool = True,
    reloader: Reloading | None = None,
    watch: bool = True,
    poll: bool = False,
    git: GitFollower | None = None,
) -> Starlette:
    """The Starlette app. Its lifespan runs the worker loop when `background`, and watches
    the repository when a `reloader` is given and `watch` (polling when `poll`), or follows
    a remote repository with `git` (its webhook route included)."""
    parts = (settings, store, worker, clock, reloader)
    events, automations, public = EventsApi(*parts), AutomationsApi(*parts), PublicApi(*parts)
    people = SubscribersApi(*parts)
    dashboard = ui_routes(AutomationPages(*parts), PeoplePages(*parts))
    send = "/v1/automations/{id}/pending/{send_id}"
    # An address may hold an encoded "/" (the handlers decode the raw path).
    person = "/v1/subscribers/{email:address}"
    routes = [
        # Answered by _App before routing; the route keeps the table complete.
        Route(INGEST_PATH, guard(events.post_events), methods=["POST"]),
        Route("/v1/providers/{name}/webhook", guard(events.provider_webhook), methods=["POST"]),
        Route("/v1/automations", guard(automations.automations), methods=["GET"]),
        Route("/v1/automations/{id}", guard(automations.automation), methods=["GET"]),
        Route("/v1/automations/{id}/trigger", guard(events.trigger), methods=["POST"]),
        Route("/v1/automations/{id}/stats", guard(automations.stats), methods=["GET"]),
        Route("/v1/automations/{id}/pending", guard(automations.pending), methods=["GET"]),
        Route(f"{send}/send-now", guard(automations.send_now), methods=["POST"]),
        Route(send, guard(automations.remove), methods=["DELETE"]),
        Route(f"{send}/remove", guard(automations.remove), methods=["POST"]),
        Route("/v1/subscribers", guard(people.list), methods=["GET"]),
        Route(f"{person}/unsuppress", guard(people.unsuppress), methods=["POST"]),
        Route(person, guard(people.show), methods=["GET"]),
        Route(person, guard(people.put), methods=["PUT"]),
        Route(person, guard(people.delete), methods=["DELETE"]),
        Route("/v1/outbox", guard(automations.outbox), methods=["GET"]),
        Route("/v1/reload", guard(automations.reload), methods=["POST"]),
        Route("/u/{token}", guard(public.unsubscribe_page), methods=["GET"]),
        Route("/u/{token}", guard(public.unsubscribe), methods=["POST"]),
        Route("/healthz", public.healthz, methods=["GET"]),
        Route("/readyz", public.readyz, methods=["GET"]),
        Route("/metrics", public.metrics_text, methods=["GET"]),
        Route("/openapi.json", public.openapi, methods=["GET"]),
        *dashboard,
    ]
    if git is not None:
        hooks = GitApi(*parts)
        hooks.follower = public.git = git
        routes.append(Route("/v1/git/webhook", guard(hooks.webhook), methods=["POST"]))
        public.metrics.registry.register(GitMetrics(git.state))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks: list[tuple[str, asyncio.Task[None]]] = []
        if background:
            tasks.append(("worker", asyncio.create_task(worker.run_forever(stop))))
        if git is not None:
            tasks.append(("git follower", asyncio.create_task(git.run(stop))))
        if reloader is not None and watch:
            from runner.gitops.watch import watch as watch_repository

            watching = asyncio.Event()
            task = asyncio.create_task(
                watch_repository(
                    reloader, settings, stop, poll=poll, catalog=worker.catalog, ready=watching
                )
            )
            tasks.append(("watcher", task))
            # Ready only once watching: a file saved after start-up is never missed.
            waiting = asyncio.ensure_future(watching.wait())
            await asyncio.wait(
                [waiting, task], timeout=WATCH_START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            waiting.cancel()
            if not watching.is_set():
                log.warning("the file watcher did not start within %.0f s", WATCH_START_TIMEOUT)
        try:
            yield
        finally:
            stop.set()
            for name, task in tasks:
                try:
                    await asyncio.wait_for(task, timeout=STOP_TIMEOUT)
                except TimeoutError:
                    log.warning("the %s did not stop within %.0f s; cancelled", name, STOP_TIMEOUT)
            await worker.providers.aclose()  # the shared HTTP client's connections

    app = _App(
        events.ingest_asgi,
        routes=routes,
        lifespan=lifespan,
        exception_handlers={StoreUnavailable: _store_unavailable},
    )
    app.gate = Gate(app.route, settings, worker.backlog, events.metrics)
    app.state.api = (events, automations, public, people)
    return app


async def _store_unavailable(request: Request, error: Exception) -> Response:
    """Every route's answer to a fault of the database: 503 with Retry-After, one log line."""
    assert isinstance(error, StoreUnavailable)
    route = request.scope.get("route")
    # The route's template, not the path: a subscriber's address stays out of the log.
    where = route.path if isinstance(route, Route) else request.url.path
    body = store_unavailable(request.method, where, error)
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(STORE_RETRY_AFTER)})


class _App(Starlette):
    """Starlette behind the gate (runner.server.api.gate), answering `POST /v1/events` before its
    middleware and router.

    Routing and Starlette's request/response layers cost more than the handler itself at
    thousands of requests/s; every other request (and other methods on /v1/events, which
    the router answers 405) takes the usual way.
    """

    def __init__(self, ingest: ASGIApp, **options: Any) -> None:
        super().__init__(**options)
        self._ingest = ingest
        self.gate: ASGIApp = self.route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.gate(scope, receive, send)

    async def route(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The fast way for ingestion, Starlette for the rest."""
        if scope["type"] == "http" and scope["path"] == INGEST_PATH and scope["method"] == "POST":
            scope["app"] = self
            await self._ingest(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
