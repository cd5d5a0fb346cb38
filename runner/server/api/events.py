"""Write entry points: events, provider webhooks and the `api` trigger (docs/events.md)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from runner.core.config import Provider as ProviderSettings
from runner.core.model import ApiTrigger
from runner.core.records import MessageEvent
from runner.engine import entering, feedback
from runner.engine.catalog import DELETED, Catalog
from runner.providers import webhook_parser
from runner.providers.webhooks import WebhookRejected
from runner.server.api.base import (
    MAX_LIST,
    STORE_RETRY_AFTER,
    Handlers,
    send_json,
    store_unavailable,
)
from runner.server.api.gate import INGEST_PATH, is_json
from runner.server.api.models import (
    OutboxWebhookEvent,
    RequestError,
    SubscriberIn,
    TriggerBody,
    body_hash,
    invalid,
    parse_events,
    parse_json,
)
from runner.server.api.subscriber_ops import SubscriberOps, internal_event_id, upsert_event
from runner.store.base import ReadTx, WriteTx
from runner.store.errors import EventConflict, StoreUnavailable


class EventsApi(Handlers):
    """POST /v1/events, POST /v1/providers/{name}/webhook, POST /v1/automations/{id}/trigger."""

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
        stored = statuses.count("stored")
        self.metrics.events_ingested.inc(stored)
        self.worker.backlog.added(stored)
        self.worker.wake()
        return {
            "results": [{"id": e.id, "status": s} for e, s in zip(events, statuses, strict=True)]
        }

    async def ingest_asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """POST /v1/events as a bare ASGI endpoint: the same answers as `post_events`
        without the router, middleware and response classes (the ingest hot path)."""
        try:
            payload = await self.ingest(Request(scope, receive))
        except RequestError as error:
            challenge = [(b"www-authenticate", b"Bearer")] if error.status == 401 else []
            await send_json(send, error.status, error.body, challenge)
            return
        except StoreUnavailable as error:
            body = store_unavailable("POST", INGEST_PATH, error)
            await send_json(send, 503, body, [(b"retry-after", str(STORE_RETRY_AFTER).encode())])
            return
        await send_json(send, 202, payload)

    async def provider_webhook(self, request: Request) -> Response:
        """POST /v1/providers/{name}/webhook: provider events (outbox format for now)."""
        name = request.path_params["name"]
        provider = self.settings.providers.get(name)
        if provider is None:
            message = f"no provider named {name!r} in postwright.yaml"
            raise RequestError(404, {"error": "unknown_provider", "message": message})
        if provider.type != "outbox":
            return await self._signed_webhook(request, name, provider)
        value = parse_json(await self.authenticated_body(request))
        items = value if isinstance(value, list) else [value]
        batch = isinstance(value, list)
        if len(items) > MAX_LIST:
            # Refused whole, like an events batch: recording a part would look like success.
            message = f"at most {MAX_LIST} provider events per request, not {len(items)}"
            body = {"error": "invalid_batch", "field": "(body)", "message": message}
            raise RequestError(422, body)
        parsed: list[OutboxWebhookEvent] = []
        for index, item in enumerate(items):
            try:
                parsed.append(OutboxWebhookEvent.model_validate(item))
            except ValidationError as error:
                where = f"[{index}]" if batch else ""
                at = index if batch else None
                raise invalid(error, "invalid_provider_event", where, at) from None
        catalog = await self.worker.catalog()
        now = self.now()
        results = await self.store.write(lambda tx: _record(tx, catalog, name, parsed, now, batch))
        self.worker.wake()
        return JSONResponse({"results": results}, status_code=202)

    async def _signed_webhook(
        self, request: Request, name: str, provider: ProviderSettings
    ) -> Response:
        """A real provider's events, verified the way that provider signs them (issue 5).

        The provider module verifies the raw bytes; each replay key (Mailgun token, Svix
        message id) is claimed once in the same transaction that records the events.
        """
        parser = webhook_parser(provider.type)
        assert parser is not None
        body = await self.body(request)
        if is_json(request.headers.get("content-type")):
            parse_json(body)  # hostile JSON (NUL, lone surrogates, NaN, ...) is a 422 here
        headers = {key.lower(): value for key, value in request.headers.items()}
        now = self.now()
        secrets = self.settings.provider_secrets.get(name, {})
        try:
            batch = parser(provider, secrets, headers, body, now)
        except WebhookRejected as error:
            extra = {"WWW-Authenticate": 'Basic realm="postwright"'} if error.status == 401 else {}
            return JSONResponse(
                {"error": "webhook_rejected", "message": error.reason},
                status_code=error.status,
                headers=extra if provider.type == "postmark" else None,
            )
        catalog = await self.worker.catalog()

        def work(tx: WriteTx) -> list[dict[str, str]] | None:
            feedback.lock_for(tx, batch.events)  # before any write (runner.engine.suppression)
            if not all([tx.claim_once(key, now) for key in batch.replay_keys]):
                return None  # a replay: nothing is recorded again
            return [
                {
                    "id": e.provider_event_id,
                    "status": feedback.record_provider_event(tx, catalog, name, e),
                }
                for e in batch.events
            ]

        results = await self.store.write(work)
        if results is None:
            # Mailgun tokens are single-use: a second use is an attack, and 406 tells Mailgun
            # not to retry. A Svix/Standard Webhooks id comes back on honest retries: 200.
            status = 406 if provider.type == "mailgun" else 200
            return JSONResponse({"error": "replayed", "results": []}, status_code=status)
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
        replay = _Replay(automation_id, body.id, body_hash(value))
        if (answered := await self.store.read(replay.answer)) is not None:
            return JSONResponse(answered, status_code=202 if answered["accepted"] else 200)
        if isinstance(body.subscriber, SubscriberIn):
            await self._upsert(body.subscriber, automation_id, body.id)
        # Read your writes: every event acknowledged before this call is processed first.
        await SubscriberOps(self.store, self.worker, self.clock).caught_up()
        catalog = await self.worker.catalog()
        now = self.now()
        key = replay.key

        def work(tx: WriteTx) -> dict[str, Any]:
            if (again := replay.answer(tx)) is not None:  # a concurrent call with that id won
                return again
            result = entering.api_trigger(
                tx, catalog, self.worker.ctx, automation_id, body.email, body.data, now
            )
            answer: dict[str, Any] = (
                {"accepted": True, "pending_send_id": result.send_id}
                if result.accepted
                else {"accepted": False, "reason": result.reason}
            )
            if key is not None:
                tx.set_meta(key, json.dumps({"hash": replay.digest, "answer": answer}))
            return answer

        answer = await self.store.write(work)
        if answer["accepted"]:
            self.worker.wake()
        return JSONResponse(answer, status_code=202 if answer["accepted"] else 200)

    async def _upsert(
        self, person: SubscriberIn, automation_id: str, trigger_id: str | None
    ) -> None:
        """Store the subscriber object of a trigger as an upsert event. With a trigger id the
        event id follows from it, so a retried call stores nothing twice."""
        event_id = (
            f"pw-trigger:{automation_id}:{_digest(trigger_id)}"
            if trigger_id
            else internal_event_id("trigger", self.clock)
        )
        event = upsert_event(event_id, person.email, person.fields, person.groups)
        try:
            await self.store.ingest([event])
        except EventConflict:
            message = f"trigger id {trigger_id!r} was already used with another subscriber"
            conflict = {"error": "conflict", "id": trigger_id, "field": "id"}
            raise RequestError(409, {**conflict, "message": message}) from None
        self.worker.wake()


def _record(
    tx: WriteTx,
    catalog: Catalog,
    provider: str,
    parsed: list[OutboxWebhookEvent],
    now: datetime,
    batch: bool,
) -> list[dict[str, str]]:
    received: list[MessageEvent] = []
    for index, item in enumerate(parsed):
        message = tx.message_by_provider_id(provider, item.message_id) or tx.message(
            item.message_id
        )
        if message is None:
            where = f"[{index}].message_id" if batch else "message_id"
            text = f"no message {item.message_id!r} of provider {provider!r}"
            # Raised before any write: a batch stays atomic.
            raise RequestError(422, {"error": "unknown_message", "field": where, "message": text})
        received.append(
            MessageEvent(
                provider=provider,
                provider_event_id=item.id,
                message_id=message.id,
                type=item.type,
                occurred_at=item.occurred_at or now,
                received_at=now,
                url=item.url,
                bounce=item.bounce or ("hard" if item.type == "bounced" else None),
            )
        )
    feedback.lock_for(tx, received)  # before any write (runner.engine.suppression)
    return [
        {
            "id": event.provider_event_id,
            "status": feedback.record_provider_event(tx, catalog, provider, event),
        }
        for event in received
    ]


@dataclass(frozen=True)
class _Replay:
    """The idempotency record of one trigger id: its meta key (the id hashed: a client id may
    well spell out the address) and the hash of this call's body."""

    automation_id: str
    trigger_id: str | None
    digest: str

    @property
    def key(self) -> str | None:
        """The meta key of the stored answer; None without an id."""
        if not self.trigger_id:
            return None
        return f"api_trigger:{self.automation_id}:{_digest(self.trigger_id)}"

    def answer(self, tx: ReadTx) -> dict[str, Any] | None:
        """The stored answer of an earlier call with this id; 409 when its body differed."""
        prior = tx.meta(self.key) if self.key is not None else None
        if prior is None:
            return None
        stored = json.loads(prior)
        if stored["hash"] != self.digest:
            message = f"trigger id {self.trigger_id!r} was already used with a different body"
            conflict = {"error": "conflict", "id": self.trigger_id, "field": "id"}
            raise RequestError(409, {**conflict, "message": message})
        return {**stored["answer"], "duplicate": True}


def _digest(text: str | None) -> str:
    return hashlib.sha256((text or "").encode("utf-8")).hexdigest()
