"""The HTTP API of `postwright serve` (SPEC 5.2) on Starlette, and start-up helpers.

Handlers validate, authenticate and answer; engine work runs in store
transactions (`store.write`) with the worker's catalog. The operations shared
with the CLI (stats, pending, outbox) are plain functions over a transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from runner import auth
from runner.api_models import (
    OutboxWebhookEvent,
    RequestError,
    TriggerBody,
    body_hash,
    invalid,
    openapi_document,
    parse_events,
    parse_json,
)
from runner.clock import Clock
from runner.engine import entering, feedback
from runner.engine.apply import ApplyReport, apply_files
from runner.engine.catalog import DELETED, Catalog, Live
from runner.engine.context import EngineContext
from runner.engine.worker import Worker
from runner.findings import Severity
from runner.lifecycle import Change
from runner.metrics import CONTENT_TYPE_LATEST, Metrics
from runner.model import ApiTrigger
from runner.providers import build_providers
from runner.settings import Settings, unsubscribe_key
from runner.store.base import EventConflict, ReadTx, Stats, Store, WriteTx
from runner.store.records import (
    CancelReason,
    HistoryEntry,
    Message,
    MessageEvent,
    PendingSend,
    SendStatus,
)
from runner.tree import Tree
from runner.unsubscribe import read_token

log = logging.getLogger("postwright.server")

MAX_BODY = 5 * 1024 * 1024
INGEST_PATH = "/v1/events"
_JSON_TYPE = (b"content-type", b"application/json")
MAX_LIST = 1000
ACTIVE = (SendStatus.PENDING, SendStatus.CLAIMED)
FILES_APPLIED_META = "files_applied_at"
RELOAD_ERROR_META = "reload_error:"
NOT_STARTED = frozenset({"draft", "scheduled"})

Handler = Callable[[Request], Awaitable[Response]]


# --- operations shared with the CLI ---------------------------------------------------


def stats_payload(stats: Stats) -> dict[str, Any]:
    """The JSON form of an automation's counts, with rates."""
    payload = dataclasses.asdict(stats)
    payload["open_rate"] = stats.open_rate
    payload["click_rate"] = stats.click_rate
    return payload


def started(live: Live) -> bool:
    """Whether the automation was ever running (stats exist only then, SPEC 3.5)."""
    return live.row.started_at is not None or any(s not in NOT_STARTED for s in live.statuses)


def send_payload(send: PendingSend) -> dict[str, Any]:
    """The JSON form of a pending send."""
    return {
        "id": send.id,
        "automation": send.automation_id,
        "email": send.email,
        "status": send.status.value,
        "due_at": _iso(send.due_at),
        "trigger_at": _iso(send.trigger_at),
        "created_at": _iso(send.created_at),
        "series_id": send.series_id,
        "repeat_index": send.repeat_index,
        "reason": send.reason,
        "attempts": send.attempts,
        "last_error": send.last_error,
    }


def message_payload(message: Message) -> dict[str, Any]:
    """The JSON form of a stored message."""
    return {
        "id": message.id,
        "pending_send_id": message.pending_send_id,
        "automation": message.automation_id,
        "to": message.to,
        "from": message.from_,
        "subject": message.subject,
        "html": message.html,
        "text": message.text,
        "headers": message.headers,
        "provider": message.provider,
        "sent_at": _iso(message.sent_at),
        "status": message.status,
        "listeners": message.listeners,
    }


def outbox(tx: ReadTx, limit: int, automation_id: str | None = None) -> list[Message]:
    """Messages of outbox providers, newest first."""
    return [m for m in tx.messages(limit, automation_id) if m.provider_type == "outbox"]


def send_now(tx: WriteTx, automation_id: str, send_id: str, now: datetime) -> PendingSend:
    """Make a pending send due now (the window is skipped, every other check applies)."""
    send = _own_send(tx, automation_id, send_id)
    if send.status is not SendStatus.PENDING or not tx.send_now(send_id, now):
        raise RequestError(409, _not_pending(send))
    tx.add_history(
        HistoryEntry(automation_id, now, "pending", _iso(send.due_at), "send_now", detail=send_id)
    )
    return tx.pending_send(send_id) or send


def remove_pending(tx: WriteTx, automation_id: str, send_id: str, now: datetime) -> PendingSend:
    """Cancel a pending send with reason `removed` (ends its series, SPEC 3.2)."""
    send = _own_send(tx, automation_id, send_id)
    reason = CancelReason.REMOVED.value
    pending = {SendStatus.PENDING}
    if not tx.set_status(
        [send_id], SendStatus.CANCELLED, now, from_statuses=pending, reason=reason
    ):
        raise RequestError(409, _not_pending(send))
    tx.add_history(
        HistoryEntry(automation_id, now, "pending", send.status.value, "removed", detail=send_id)
    )
    return tx.pending_send(send_id) or send


async def apply_repository(
    store: Store, tree: Tree, now: datetime, commit: str | None
) -> ApplyReport:
    """Apply the checked files (start-up, SPEC 6); refused changes are kept as reload errors."""

    def work(tx: WriteTx) -> ApplyReport:
        report = apply_files(tx, tree, now, commit)
        refused = {change.id: change for change in report.refused}
        for change in report.refused:
            tx.set_meta(RELOAD_ERROR_META + change.id, json.dumps(_reload_error(change, now)))
        for row in tx.automations():
            if row.id not in refused and tx.meta(RELOAD_ERROR_META + row.id):
                tx.set_meta(RELOAD_ERROR_META + row.id, "")  # the store has no meta delete
        tx.set_meta(FILES_APPLIED_META, _iso(now) or "")
        return report

    return await store.write(work)


async def prepare(
    settings: Settings, store: Store, clock: Clock, tree: Tree, commit: str | None = None
) -> tuple[Worker, ApplyReport]:
    """Start-up: the unsubscribe key, the providers, the files applied, and the worker."""
    key = await unsubscribe_key(settings, store)
    ctx = EngineContext(settings.timezone, settings.public_url, key)
    providers = build_providers(settings.config)
    report = await apply_repository(store, tree, clock.now(), commit)
    retention = timedelta(seconds=settings.event_id_retention)
    worker = Worker(store, ctx, clock, providers, Metrics(), event_id_retention=retention)
    return worker, report


def _reload_error(change: Change, now: datetime) -> dict[str, Any]:
    errors = [f for f in change.findings if f.severity is Severity.ERROR] or list(change.findings)
    return {
        "at": _iso(now),
        "kind": change.kind,
        "desired_status": change.new_status.value if change.new_status is not None else None,
        "findings": [
            {
                "path": f.path,
                "line": f.line,
                "col": f.col,
                "rule": f.rule,
                "message": f.message,
                "help": f.help,
            }
            for f in errors
        ],
    }


def _own_send(tx: ReadTx, automation_id: str, send_id: str) -> PendingSend:
    send = tx.pending_send(send_id)
    if send is None or send.automation_id != automation_id:
        message = f"no pending send {send_id!r} in automation {automation_id!r}"
        raise RequestError(404, {"error": "unknown_send", "field": "send_id", "message": message})
    return send


def _not_pending(send: PendingSend) -> dict[str, Any]:
    return {
        "error": "not_pending",
        "field": "send_id",
        "status": send.status.value,
        "message": f"send {send.id} is {send.status.value}, not pending",
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


# --- the app --------------------------------------------------------------------------


class Api:
    """The request handlers, bound to one store, worker and clock."""

    def __init__(self, settings: Settings, store: Store, worker: Worker, clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.worker = worker
        self.clock = clock
        if worker.metrics is None:
            worker.metrics = Metrics()
        self.metrics = worker.metrics

    # authentication and bodies

    async def body(self, request: Request) -> bytes:
        """The raw body, refused with 413 past 5 MiB before anything is parsed."""
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise RequestError(400, {"error": "bad_request", "message": "bad Content-Length"})
            if int(length) > MAX_BODY:
                raise RequestError(413, _too_large())
        received = bytearray()
        async for chunk in request.stream():
            received += chunk
            if len(received) > MAX_BODY:
                raise RequestError(413, _too_large())
        return bytes(received)

    async def authenticated_body(self, request: Request) -> bytes:
        """The body of a request that carries an API key or a valid webhook signature."""
        settings = self.settings
        if not settings.auth_required or auth.bearer_ok(
            request.headers.get("authorization"), settings.api_keys
        ):
            return await self.body(request)
        if not settings.event_webhook_secrets or "webhook-signature" not in request.headers:
            raise RequestError(401, _unauthorised("a bearer API key is required"))
        raw = await self.body(request)
        try:
            auth.verify_webhook(request.headers, raw, settings.event_webhook_secrets, self._now())
        except auth.AuthError as error:
            raise RequestError(401, _unauthorised(str(error))) from None
        return raw

    def require_key(self, request: Request) -> None:
        """Endpoints other than ingestion take only a bearer key."""
        header = request.headers.get("authorization")
        if self.settings.auth_required and not auth.bearer_ok(header, self.settings.api_keys):
            raise RequestError(401, _unauthorised("a bearer API key is required"))

    def _now(self) -> datetime:
        return self.clock.now()

    async def live(self, automation_id: str) -> tuple[Catalog, Live]:
        """The applied automation, or 404."""
        catalog = await self.worker.catalog()
        live = catalog.by_id.get(automation_id)
        if live is None:
            message = f"no applied automation {automation_id!r}"
            raise RequestError(404, {"error": "unknown_automation", "message": message})
        return catalog, live

    # ingestion

    async def post_events(self, request: Request) -> Response:
        """POST /v1/events: store one event or a batch, atomically."""
        return JSONResponse(await self.ingest(request), status_code=202)

    async def ingest(self, request: Request) -> dict[str, Any]:
        """Validate and store the events of a request; the 202 answer once committed."""
        value = parse_json(await self.authenticated_body(request))
        batch = isinstance(value, dict) and "events" in value
        events = parse_events(value)
        try:
            statuses = await self.store.ingest(events)
        except EventConflict as conflict:
            index = next(i for i, e in enumerate(events) if e.id == conflict.event_id)
            field = f"events[{index}].id" if batch else "id"
            body = {"error": "conflict", "id": conflict.event_id, "field": field}
            raise RequestError(409, {**body, "index": index, "message": str(conflict)}) from None
        self.metrics.events_ingested.inc(statuses.count("stored"))
        self.worker.wake()
        return {
            "results": [{"id": e.id, "status": s} for e, s in zip(events, statuses, strict=True)]
        }

    async def ingest_asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """POST /v1/events as a bare ASGI endpoint: the same answers as `post_events`
        without the router, middleware and response classes (the ingest hot path)."""
        status = 202
        try:
            payload = await self.ingest(Request(scope, receive))
        except RequestError as error:
            status, payload = error.status, error.body
        body = _json_bytes(payload)
        headers = [(b"content-length", str(len(body)).encode()), _JSON_TYPE]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def provider_webhook(self, request: Request) -> Response:
        """POST /v1/providers/{name}/webhook: provider events (outbox format for now)."""
        name = request.path_params["name"]
        provider = self.settings.providers.get(name)
        if provider is None:
            message = f"no provider named {name!r} in postwright.yaml"
            raise RequestError(404, {"error": "unknown_provider", "message": message})
        if provider.type != "outbox":
            message = f"webhooks of {provider.type} providers are not supported yet"
            raise RequestError(404, {"error": "unsupported_provider", "message": message})
        value = parse_json(await self.authenticated_body(request))
        items = value if isinstance(value, list) else [value]
        batch = isinstance(value, list)
        parsed: list[OutboxWebhookEvent] = []
        for index, item in enumerate(items[:MAX_LIST]):
            try:
                parsed.append(OutboxWebhookEvent.model_validate(item))
            except ValidationError as error:
                where = f"[{index}]" if batch else ""
                at = index if batch else None
                raise invalid(error, "invalid_provider_event", where, at) from None
        catalog = await self.worker.catalog()
        now = self._now()
        results = await self.store.write(lambda tx: _record(tx, catalog, name, parsed, now, batch))
        self.worker.wake()
        return JSONResponse({"results": results}, status_code=202)

    async def trigger(self, request: Request) -> Response:
        """POST /v1/automations/{id}/trigger: the api trigger for one subscriber."""
        self.require_key(request)
        automation_id = request.path_params["id"]
        value = parse_json(await self.body(request))
        try:
            body = TriggerBody.model_validate(value)
        except ValidationError as error:
            raise invalid(error, "invalid_trigger") from None
        catalog, live = await self.live(automation_id)
        if live.row.status == DELETED:
            raise RequestError(404, {"error": "unknown_automation", "message": "deleted"})
        if not isinstance(live.model.trigger, ApiTrigger):
            kind = live.model.trigger.type
            message = f"{automation_id} has a `{kind}` trigger, not `api`"
            raise RequestError(409, {"error": "trigger_not_api", "message": message})
        now = self._now()
        digest = body_hash(value)

        def work(tx: WriteTx) -> dict[str, Any]:
            key = f"api_trigger:{automation_id}:{body.id}" if body.id else None
            if key is not None and (prior := tx.meta(key)) is not None:
                stored = json.loads(prior)
                if stored["hash"] != digest:
                    message = f"trigger id {body.id!r} was already used with a different body"
                    conflict = {"error": "conflict", "id": body.id, "field": "id"}
                    raise RequestError(409, {**conflict, "message": message})
                return {**stored["answer"], "duplicate": True}
            result = entering.api_trigger(
                tx, catalog, self.worker.ctx, automation_id, body.subscriber, body.data, now
            )
            answer: dict[str, Any] = (
                {"accepted": True, "pending_send_id": result.send_id}
                if result.accepted
                else {"accepted": False, "reason": result.reason}
            )
            if key is not None:
                tx.set_meta(key, json.dumps({"hash": digest, "answer": answer}))
            return answer

        answer = await self.store.write(work)
        if answer["accepted"]:
            self.worker.wake()
        return JSONResponse(answer, status_code=202 if answer["accepted"] else 200)

    # automations

    async def automations(self, request: Request) -> Response:
        """GET /v1/automations."""
        self.require_key(request)
        catalog = await self.worker.catalog()
        now = self._now()
        rows = [self._summary(live, now) for _, live in sorted(catalog.by_id.items())]
        return JSONResponse({"automations": rows})

    def _summary(self, live: Live, now: datetime) -> dict[str, Any]:
        row = live.row
        return {
            "id": row.id,
            "name": live.model.name,
            "path": row.path,
            "revision": row.revision,
            "trigger": live.model.trigger.type,
            "desired_status": row.status,
            "effective_status": live.status_at(now) or row.status,
            "commit": row.commit,
            "applied_at": _iso(row.applied_at),
            "started_at": _iso(row.started_at),
            "stopped_at": _iso(row.stopped_at),
        }

    async def automation(self, request: Request) -> Response:
        """GET /v1/automations/{id}: applied version, statuses, history, last reload error."""
        self.require_key(request)
        automation_id = request.path_params["id"]

        def read(tx: ReadTx) -> tuple[list[HistoryEntry], str | None]:
            return tx.history(automation_id), tx.meta(RELOAD_ERROR_META + automation_id)

        history, error = await self.store.read(read)
        reload_error = json.loads(error) if error else None
        try:
            _, live = await self.live(automation_id)
        except RequestError as missing:
            if reload_error is None:
                raise
            raise RequestError(404, {**missing.body, "last_reload_error": reload_error}) from None
        payload = self._summary(live, self._now())
        payload["source"] = live.row.source
        payload["template_files"] = sorted(live.row.templates)
        payload["history"] = [_history(entry) for entry in history]
        payload["last_reload_error"] = reload_error
        if reload_error is not None and reload_error.get("desired_status"):
            payload["desired_status"] = reload_error["desired_status"]
        return JSONResponse(payload)

    async def stats(self, request: Request) -> Response:
        """GET /v1/automations/{id}/stats (null for automations never started)."""
        self.require_key(request)
        _, live = await self.live(request.path_params["id"])
        if not started(live):
            return JSONResponse({"stats": None, "reason": "not_started"})
        stats = await self.store.read(lambda tx: tx.stats(live.id))
        return JSONResponse({"stats": stats_payload(stats)})

    async def pending(self, request: Request) -> Response:
        """GET /v1/automations/{id}/pending (?status=pending,claimed&limit=100)."""
        self.require_key(request)
        _, live = await self.live(request.path_params["id"])
        limit = _limit(request, 100)
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
        now = self._now()
        send = await self.store.write(lambda tx: send_now(tx, automation_id, send_id, now))
        self.worker.wake()
        return JSONResponse(send_payload(send))

    async def remove(self, request: Request) -> Response:
        """DELETE /v1/automations/{id}/pending/{send_id} (or POST .../remove)."""
        self.require_key(request)
        automation_id, send_id = request.path_params["id"], request.path_params["send_id"]
        await self.live(automation_id)
        now = self._now()
        send = await self.store.write(lambda tx: remove_pending(tx, automation_id, send_id, now))
        return JSONResponse(send_payload(send))

    async def outbox(self, request: Request) -> Response:
        """GET /v1/outbox (?limit=50&automation=ID), newest first."""
        self.require_key(request)
        limit = _limit(request, 50)
        automation_id = request.query_params.get("automation") or None
        messages = await self.store.read(lambda tx: outbox(tx, limit, automation_id))
        return JSONResponse({"messages": [message_payload(m) for m in messages]})

    # unsubscribe (no authentication: the signed token is the credential)

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
        now = self._now()
        catalog = await self.worker.catalog()

        def work(tx: WriteTx) -> bool:
            message = tx.message(message_id)
            if message is None or message.subscriber_id != subscriber_id:
                return False
            # A provider-style `unsubscribed` event of that message: it suppresses the
            # subscriber and counts in the automation's stats; repeats are duplicates.
            event = MessageEvent(
                provider=message.provider,
                provider_event_id=f"unsubscribe-link:{message_id}",
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
        if applied is None:
            return JSONResponse({"ready": False, "reason": "files not applied"}, status_code=503)
        return JSONResponse({"ready": True, "files_applied_at": applied})

    async def metrics_text(self, request: Request) -> Response:
        """GET /metrics: Prometheus text; store-backed values are read now."""
        depth, totals, errors = await self.store.read(_scrape)
        self.metrics.queue_depth.set(depth)
        self.metrics.sends.update(totals)
        self.metrics.reload_errors.set(errors)
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def openapi(self, request: Request) -> Response:
        """GET /openapi.json."""
        return JSONResponse(openapi_document())


def _record(
    tx: WriteTx,
    catalog: Catalog,
    provider: str,
    parsed: list[OutboxWebhookEvent],
    now: datetime,
    batch: bool,
) -> list[dict[str, str]]:
    results: list[dict[str, str]] = []
    for index, item in enumerate(parsed):
        message = tx.message_by_provider_id(provider, item.message_id) or tx.message(
            item.message_id
        )
        if message is None:
            where = f"[{index}].message_id" if batch else "message_id"
            text = f"no message {item.message_id!r} of provider {provider!r}"
            # Raising rolls the whole request back: a batch stays atomic.
            raise RequestError(422, {"error": "unknown_message", "field": where, "message": text})
        bounce = item.bounce or ("hard" if item.type == "bounced" else None)
        event = MessageEvent(
            provider=provider,
            provider_event_id=item.id,
            message_id=message.id,
            type=item.type,
            occurred_at=item.occurred_at or now,
            received_at=now,
            url=item.url,
            bounce=bounce,
        )
        results.append(
            {"id": item.id, "status": feedback.record_provider_event(tx, catalog, provider, event)}
        )
    return results


def _scrape(tx: ReadTx) -> tuple[int, dict[str, int], int]:
    totals: Counter[str] = Counter()
    errors = 0
    for row in tx.automations():
        stats = tx.stats(row.id)
        totals["sent"] += stats.sent
        totals["failed"] += stats.failed
        totals["outcome_unknown"] += stats.outcome_unknown
        totals["cancelled"] += sum(stats.cancelled.values())
        errors += bool(tx.meta(RELOAD_ERROR_META + row.id))
    return tx.queue_depth(), dict(totals), errors


def _history(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "at": _iso(entry.at),
        "kind": entry.kind,
        "previous": entry.previous,
        "value": entry.value,
        "commit": entry.commit,
        "detail": entry.detail,
    }


def _limit(request: Request, default: int) -> int:
    text = request.query_params.get("limit")
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIST:
        message = f"limit must be an integer from 1 to {MAX_LIST}"
        raise RequestError(422, {"error": "invalid_query", "field": "limit", "message": message})
    return int(text)


def _too_large() -> dict[str, Any]:
    return {"error": "too_large", "field": "(body)", "message": f"body over {MAX_BODY} bytes"}


def _unauthorised(message: str) -> dict[str, Any]:
    return {"error": "unauthorized", "message": message}


def _page(message: str, extra: str = "") -> str:
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>Unsubscribe</title></head>'
        f"<body><p>{html.escape(message)}</p>{extra}</body></html>"
    )


def _guard(handler: Handler) -> Handler:
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except RequestError as error:
            headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
            return JSONResponse(error.body, status_code=error.status, headers=headers)

    return guarded


def create_app(
    settings: Settings, store: Store, worker: Worker, clock: Clock, *, background: bool = True
) -> Starlette:
    """The Starlette app; its lifespan runs the worker loop when `background`."""
    api = Api(settings, store, worker, clock)
    routes = [
        # Answered by _App before routing; the route keeps the table complete.
        Route(INGEST_PATH, _guard(api.post_events), methods=["POST"]),
        Route("/v1/providers/{name}/webhook", _guard(api.provider_webhook), methods=["POST"]),
        Route("/v1/automations", _guard(api.automations), methods=["GET"]),
        Route("/v1/automations/{id}", _guard(api.automation), methods=["GET"]),
        Route("/v1/automations/{id}/trigger", _guard(api.trigger), methods=["POST"]),
        Route("/v1/automations/{id}/stats", _guard(api.stats), methods=["GET"]),
        Route("/v1/automations/{id}/pending", _guard(api.pending), methods=["GET"]),
        Route(
            "/v1/automations/{id}/pending/{send_id}/send-now",
            _guard(api.send_now),
            methods=["POST"],
        ),
        Route("/v1/automations/{id}/pending/{send_id}", _guard(api.remove), methods=["DELETE"]),
        Route(
            "/v1/automations/{id}/pending/{send_id}/remove", _guard(api.remove), methods=["POST"]
        ),
        Route("/v1/outbox", _guard(api.outbox), methods=["GET"]),
        Route("/u/{token}", _guard(api.unsubscribe_page), methods=["GET"]),
        Route("/u/{token}", _guard(api.unsubscribe), methods=["POST"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/readyz", api.readyz, methods=["GET"]),
        Route("/metrics", api.metrics_text, methods=["GET"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run_forever(stop)) if background else None
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                try:
                    await asyncio.wait_for(task, timeout=30)
                except TimeoutError:
                    log.warning("the worker did not stop within 30 s; cancelled")

    app = _App(api.ingest_asgi, routes=routes, lifespan=lifespan)
    app.state.api = api
    return app


class _App(Starlette):
    """Starlette answering `POST /v1/events` before its middleware and router.

    Routing and Starlette's request/response layers cost more than the handler itself at
    thousands of requests/s; every other request (and other methods on /v1/events, which
    the router answers 405) takes the usual way.
    """

    def __init__(self, ingest: ASGIApp, **options: Any) -> None:
        super().__init__(**options)
        self._ingest = ingest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == INGEST_PATH and scope["method"] == "POST":
            scope["app"] = self
            await self._ingest(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _json_bytes(payload: dict[str, Any]) -> bytes:
    # Exactly what JSONResponse renders.
    return json.dumps(
        payload, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")
