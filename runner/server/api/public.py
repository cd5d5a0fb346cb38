"""Handlers without an API key (unsubscribe links, health, readiness) and operations (metrics,
OpenAPI)."""

from __future__ import annotations

import html
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from runner.core.records import MessageEvent
from runner.core.unsubscribe import read_token
from runner.engine import feedback
from runner.engine.suppression import UNSUBSCRIBE_LINK_PREFIX
from runner.gitops.follow import GitFollower
from runner.gitops.reload_records import ReloadState, read_state
from runner.gitops.reload_state import (
    FILES_APPLIED_META,
    reload_summary,
    row_revision,
)
from runner.server.api.base import Handlers
from runner.server.api.git import WEBHOOK_OPERATION
from runner.server.metrics import CONTENT_TYPE_LATEST, AutomationInfo
from runner.server.openapi import openapi_document
from runner.store.base import ReadTx, WriteTx

log = logging.getLogger("postwright.server")

RELOAD_OPERATION = {
    "post": {
        "summary": "Re-read the repository now and apply what is legal",
        "responses": {
            "200": {"description": "the reload's result: applied, refused, result"},
            "401": {"description": "a bearer API key is required"},
            "503": {"description": "started without a reloader"},
        },
    }
}


class PublicApi(Handlers):
    """/u/{token}, /healthz, /readyz, /metrics, /openapi.json."""

    git: GitFollower | None = None  # `serve --git`: its state is part of /readyz

    async def unsubscribe_page(self, request: Request) -> Response:
        """GET /u/{token}: a confirmation form; a GET never unsubscribes."""
        token = request.path_params["token"]
        if read_token(self.worker.ctx.unsubscribe_key, token) is None:
            return HTMLResponse(_page("This link is not valid."), status_code=404)
        form = (
            f'<form method="post" action="/u/{html.escape(token)}">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Unsubscribe</button></form>'
        )
        return HTMLResponse(_page("Stop receiving these emails?", form))

    async def unsubscribe(self, request: Request) -> Response:
        """POST /u/{token}: RFC 8058 one-click unsubscribe."""
        token = request.path_params["token"]
        await self.body(request)  # `List-Unsubscribe=One-Click`; the token alone decides
        found = read_token(self.worker.ctx.unsubscribe_key, token)
        if found is None:
            return HTMLResponse(_page("This link is not valid."), status_code=404)
        subscriber_id, message_id = found
        now = self.now()
        catalog = await self.worker.catalog()

        def work(tx: WriteTx) -> bool:
            message = tx.message(message_id)
            if message is None or message.subscriber_id != subscriber_id:
                return False
            # A provider-style `unsubscribed` event of that message: it suppresses the
            # subscriber and counts in the automation's stats; repeats are duplicates.
            event = MessageEvent(
                provider=message.provider,
                provider_event_id=f"{UNSUBSCRIBE_LINK_PREFIX}{message_id}",
                message_id=message_id,
                type="unsubscribed",
                occurred_at=now,
                received_at=now,
            )
            feedback.record_provider_event(tx, catalog, message.provider, event)
            return True

        if not await self.store.write(work):
            return HTMLResponse(_page("This link is not valid."), status_code=404)
        self.worker.wake()
        return HTMLResponse(_page("You are unsubscribed. You will not get these emails again."))

    # operations

    async def healthz(self, request: Request) -> Response:
        """GET /healthz: the process answers."""
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """GET /readyz: the store answers and the files were applied."""
        try:
            applied = await self.store.read(lambda tx: tx.meta(FILES_APPLIED_META))
        except Exception as error:
            log.warning("readiness: store unreachable: %s", error)
            return JSONResponse({"ready": False, "reason": "store unreachable"}, status_code=503)
        # Following a remote: a failed fetch keeps the applied state live, so it stays ready;
        # the detail says why the newest commits may be missing.
        detail = {} if self.git is None else {"remote": self.git.state.detail()}
        if applied is None:
            body = {"ready": False, "reason": "files not applied", **detail}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"ready": True, "files_applied_at": applied, **detail})

    async def metrics_text(self, request: Request) -> Response:
        """GET /metrics: Prometheus text; store-backed values are read now."""
        catalog = await self.worker.catalog()
        now = self.now()
        scraped = await self.store.read(_scrape)
        metrics = self.metrics
        metrics.queue_depth.set(scraped.depth)
        metrics.events_backlog.set(self.worker.backlog.count)
        metrics.sends.update(scraped.totals)
        metrics.reload_errors.set(scraped.errors)
        summary = scraped.summary
        metrics.reloads.update(summary.get("counts") or {})
        # Before any reload (an app without a reloader) the start-up apply is the last one.
        metrics.reload_successful.set(0 if summary.get("successful") is False else 1)
        if summary.get("last_success_at"):
            success = datetime.fromisoformat(summary["last_success_at"])
            metrics.reload_success_time.set(success.timestamp())
        infos = []
        for ident, live in catalog.by_id.items():
            state = scraped.states.get(ident) or ReloadState()
            status = live.status_at(now) or live.row.status
            desired = state.desired_status or live.row.status
            applied = state.applied_revision or row_revision(live.row)
            infos.append(AutomationInfo(ident, status, desired, applied))
        metrics.automations.update(infos)
        paused = self.worker.providers.paused()
        for name in self.worker.providers:
            metrics.provider_paused.labels(name).set(1 if name in paused else 0)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def openapi(self, request: Request) -> Response:
        """GET /openapi.json."""
        document = openapi_document()
        document["paths"].setdefault("/v1/reload", RELOAD_OPERATION)
        if self.git is not None:
            document["paths"]["/v1/git/webhook"] = WEBHOOK_OPERATION
        return JSONResponse(document)


@dataclass(frozen=True)
class _Scraped:
    depth: int
    totals: dict[str, int]
    errors: int
    summary: dict[str, Any]
    states: dict[str, ReloadState | None]


def _scrape(tx: ReadTx) -> _Scraped:
    totals: Counter[str] = Counter()
    errors = 0
    states: dict[str, ReloadState | None] = {}
    for row in tx.automations():
        stats = tx.stats(row.id)
        totals["sent"] += stats.sent
        totals["failed"] += stats.failed
        totals["outcome_unknown"] += stats.outcome_unknown
        totals["cancelled"] += sum(stats.cancelled.values())
        state = states[row.id] = read_state(tx, row.id)
        errors += state is not None and state.last_error is not None
    return _Scraped(tx.queue_depth(), dict(totals), errors, reload_summary(tx), states)


def _page(message: str, extra: str = "") -> str:
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>Unsubscribe</title></head>'
        f"<body><p>{html.escape(message)}</p>{extra}</body></html>"
    )
