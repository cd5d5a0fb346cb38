"""Handlers of the applied automations: list, detail, stats, pending sends, outbox and reload."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from runner.core.findings import Finding
from runner.core.records import AppliedAutomation, HistoryEntry, SendStatus
from runner.engine.catalog import Catalog, Live
from runner.gitops.reload_records import ReloadState, read_state
from runner.gitops.reload_state import ReloadResult, row_revision
from runner.server.api.base import Handlers, iso, query_limit
from runner.server.api.models import RequestError
from runner.server.api.operations import (
    ACTIVE,
    history_payload,
    message_payload,
    outbox,
    remove_pending,
    revisions_payload,
    send_now,
    send_payload,
    started,
    stats_payload,
)
from runner.store.base import ReadTx


class AutomationsApi(Handlers):
    """GET /v1/automations(/{id}), stats, pending sends, outbox, POST /v1/reload."""

    async def automations(self, request: Request) -> Response:
        """GET /v1/automations: the summary of every applied automation (no source)."""
        self.require_key(request)
        catalog = await self.worker.catalog()
        now = self.now()
        ids = sorted(catalog.by_id)

        def read(tx: ReadTx) -> dict[str, ReloadState | None]:
            return {ident: read_state(tx, ident) for ident in ids}

        states = await self.store.read(read)
        rows = [summary(catalog.by_id[ident], states[ident], now) for ident in ids]
        return JSONResponse({"automations": rows})

    async def automation(self, request: Request) -> Response:
        """GET /v1/automations/{id}: applied version, statuses, revisions, history, last error."""
        self.require_key(request)
        automation_id = request.path_params["id"]

        def read(
            tx: ReadTx,
        ) -> tuple[list[HistoryEntry], ReloadState | None, AppliedAutomation | None]:
            # One snapshot: the applied row and its reload state always agree.
            return (
                tx.history(automation_id),
                read_state(tx, automation_id),
                tx.automation(automation_id),
            )

        try:
            catalog, live = await self.live(automation_id)
        except RequestError as missing:
            _, state, _ = await self.store.read(read)
            if state is None or state.last_error is None:
                raise
            # A file that never validated: nothing applied, but its error is worth showing.
            shown = state.to_json()
            body = {**missing.body, "last_reload_error": shown["last_error"], "reload": shown}
            raise RequestError(404, body) from None
        history, state, stored = await self.store.read(read)
        if stored is not None:
            # The catalog may lag a reload that just committed: judge this snapshot alone.
            live = Catalog.build([stored], history, previous=catalog).by_id[stored.id]
        row = live.row
        payload = summary(live, state, self.now(), row)
        payload["source"] = row.source
        payload["template_files"] = sorted(row.templates)
        payload["applied"] = {
            "source": row.source,
            "templates": dict(row.templates),
            "path": row.path,
            "commit": row.commit,
            "revision": payload["applied_revision"],
        }
        payload["history"] = [history_payload(entry) for entry in history]
        return JSONResponse(payload)

    async def stats(self, request: Request) -> Response:
        """GET /v1/automations/{id}/stats (null for automations never started);
        `?by=revision`: message counts per applied revision with its commit."""
        self.require_key(request)
        by = request.query_params.get("by")
        if by not in (None, "revision"):
            message = "by must be `revision` (or left out for the automation's totals)"
            raise RequestError(422, {"error": "invalid_query", "field": "by", "message": message})
        _, live = await self.live(request.path_params["id"])
        if not started(live):
            return JSONResponse({"stats": None, "reason": "not_started"})
        if by == "revision":
            found = await self.store.read(lambda tx: tx.stats_by_revision(live.id))
            return JSONResponse({"by": "revision", "revisions": revisions_payload(found)})
        stats = await self.store.read(lambda tx: tx.stats(live.id))
        return JSONResponse({"stats": stats_payload(stats)})

    async def pending(self, request: Request) -> Response:
        """GET /v1/automations/{id}/pending (?status=pending,claimed&limit=100)."""
        self.require_key(request)
        _, live = await self.live(request.path_params["id"])
        limit = query_limit(request, 100)
        wanted = request.query_params.get("status")
        try:
            statuses = [SendStatus(s) for s in wanted.split(",")] if wanted else list(ACTIVE)
        except ValueError:
            message = f"status must be among {', '.join(s.value for s in SendStatus)}"
            body = {"error": "invalid_query", "field": "status", "message": message}
            raise RequestError(422, body) from None
        sends = await self.store.read(lambda tx: tx.pending_sends(live.id, statuses, limit))
        return JSONResponse({"pending": [send_payload(s) for s in sends]})

    async def send_now(self, request: Request) -> Response:
        """POST /v1/automations/{id}/pending/{send_id}/send-now."""
        self.require_key(request)
        automation_id, send_id = request.path_params["id"], request.path_params["send_id"]
        await self.live(automation_id)
        now = self.now()
        send = await self.store.write(lambda tx: send_now(tx, automation_id, send_id, now))
        self.worker.wake()
        return JSONResponse(send_payload(send))

    async def remove(self, request: Request) -> Response:
        """DELETE /v1/automations/{id}/pending/{send_id} (or POST .../remove)."""
        self.require_key(request)
        automation_id, send_id = request.path_params["id"], request.path_params["send_id"]
        await self.live(automation_id)
        now = self.now()
        send = await self.store.write(lambda tx: remove_pending(tx, automation_id, send_id, now))
        return JSONResponse(send_payload(send))

    async def outbox(self, request: Request) -> Response:
        """GET /v1/outbox (?limit=50&automation=ID), newest first."""
        self.require_key(request)
        limit = query_limit(request, 50)
        automation_id = request.query_params.get("automation") or None
        messages = await self.store.read(lambda tx: outbox(tx, limit, automation_id))
        return JSONResponse({"messages": [message_payload(m) for m in messages]})

    async def reload(self, request: Request) -> Response:
        """POST /v1/reload: re-read the repository now; the reload's result."""
        self.require_key(request)
        await self.body(request)  # any body is ignored, but still capped
        if self.reloader is None:
            message = "this app was started without a reloader"
            raise RequestError(503, {"error": "reload_unavailable", "message": message})
        result = await self.reloader.reload(None, reason="api")
        return JSONResponse(result_payload(result))


def summary(
    live: Live, state: ReloadState | None, now: datetime, row: AppliedAutomation | None = None
) -> dict[str, Any]:
    """One automation as listed: applied row, file (desired) status and the reload state.

    `row`, when given, was read with `state` in one transaction (the catalog's may lag).
    """
    row = row or live.row
    state = state or ReloadState()
    error = state.last_error.to_json() if state.last_error is not None else None
    return {
        "id": row.id,
        "name": live.model.name,
        "path": row.path,
        "revision": row.revision,
        "trigger": live.model.trigger.type,
        "desired_status": state.desired_status or row.status,
        "effective_status": live.status_at(now) or row.status,
        "applied_revision": state.applied_revision or row_revision(row),
        "attempted_revision": state.attempted_revision,
        "last_error": error,
        "last_reload_error": error,
        "deletion_blocked": state.deletion_blocked,
        "commit": row.commit,
        "applied_at": iso(row.applied_at),
        "started_at": iso(row.started_at),
        "stopped_at": iso(row.stopped_at),
    }


def result_payload(result: ReloadResult) -> dict[str, Any]:
    """The JSON form of a reload's result."""
    return {
        "result": result.result,
        "applied": [
            {"id": ident, "what": what, "commit": commit} for ident, what, commit in result.applied
        ],
        "refused": [
            {"id": ident, "commit": commit, "findings": [finding_payload(f) for f in findings]}
            for ident, findings, commit in result.refused
        ],
    }


def finding_payload(finding: Finding) -> dict[str, Any]:
    """The JSON form of a finding."""
    return {
        "path": finding.path,
        "line": finding.line,
        "col": finding.col,
        "rule": finding.rule,
        "severity": finding.severity.value,
        "message": finding.message,
        "help": finding.help,
        "commit": finding.commit,
    }
