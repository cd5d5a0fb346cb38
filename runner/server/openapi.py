"""The OpenAPI 3.1 description of the HTTP API of `postwright serve` (GET /openapi.json):
request bodies come from the pydantic models of runner.server.api.models."""

from __future__ import annotations

from typing import Any

from runner.server.api.models import (
    Event,
    EventBatch,
    OutboxWebhookEvent,
    SubscriberPut,
    TriggerBody,
    UnsuppressBody,
)

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "field": {"type": "string", "description": "the offending field, e.g. events[3].id"},
        "index": {"type": "integer"},
        "message": {"type": "string"},
    },
}
_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    content = {_JSON: {"schema": schema or {"type": "object"}}}
    return {"description": description, "content": content}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        401: "no valid API key or signature",
        404: "not found",
        409: "conflict",
        413: "body over 5 MiB",
        415: "a body that is not Content-Type: application/json",
        422: "invalid body, naming the field",
        429: "overloaded: retry after the Retry-After header's seconds",
        503: "the database failed the request (or is still catching up): nothing was "
        "changed, retry after the Retry-After header's seconds",
    }
    return {str(code): _answer(text[code], _ref("Error")) for code in codes}


def _op(
    summary: str,
    ok: dict[str, Any],
    errors: tuple[int, ...] = (401,),
    body: str | None = None,
) -> dict[str, Any]:
    # Every one of these reads or writes the store, whose faults are 503.
    responses = {**ok, **_errors(*errors, 503)}
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        schema = _ref(body)
        operation["requestBody"] = {"required": True, "content": {_JSON: {"schema": schema}}}
    return operation


def _path_param(*names: str) -> list[dict[str, Any]]:
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
    ]


def _query(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": {"type": kind}}


def _subscriber_paths() -> dict[str, Any]:
    """The subscribers API (docs/subscribers.md)."""
    email = _path_param("email")
    listing = _op(
        "Live subscribers by creation, filtered, one page at a time",
        {"200": _answer("subscribers and next_cursor (null after the last page)")},
        (401, 422),
    )
    listing["parameters"] = [
        _query("suppressed", "true, false, or a reason: bounced, complained, unsubscribed"),
        _query("group", "only members of this group"),
        _query("limit", "1 to 1000 (default 100)", "integer"),
        _query("cursor", "next_cursor of the previous page, as it is"),
    ]
    show = _op(
        "Fields, groups, suppression (reason, time, source), lifts, pending sends and recent "
        "messages with their provider events",
        {"200": _answer("the subscriber")},
        (401, 404, 422),
    )
    show["parameters"] = [_query("messages", "recent messages shown (default 20)", "integer")]
    return {
        "/v1/subscribers": {"get": listing},
        "/v1/subscribers/{email}": {
            "parameters": email,
            "get": show,
            "put": _op(
                "Upsert like an event (fields merge, groups replace, derived events fire)",
                {
                    "200": _answer("updated: the subscriber"),
                    "201": _answer("created: the subscriber"),
                    "202": _answer("stored, still being processed"),
                },
                (401, 413, 415, 422),
                "SubscriberPut",
            ),
            "delete": _op(
                "Erase the person: delete, cancel pending sends, scrub the address and "
                "rendered emails everywhere, keep the counts",
                {"200": _answer("what was scrubbed")},
                (401, 404, 422),
            ),
        },
        "/v1/subscribers/{email}/unsuppress": {
            "parameters": email,
            "post": _op(
                "Lift a hard-bounce or complaint suppression (recorded with by and note); "
                "409 for an unsubscribe, which only a resubscribe lifts",
                {"200": _answer("the lift (null when not suppressed) and the subscriber")},
                (401, 404, 409, 415, 422),
                "UnsuppressBody",
            ),
        },
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of every endpoint of `postwright serve`."""
    schemas: dict[str, Any] = {"Error": _ERROR}
    for model in (
        Event,
        EventBatch,
        OutboxWebhookEvent,
        TriggerBody,
        SubscriberPut,
        UnsuppressBody,
    ):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas["EventsBody"] = {"oneOf": [_ref("Event"), _ref("EventBatch")]}
    results = {"type": "object", "properties": {"results": {"type": "array"}}}
    automation = _path_param("id")
    send = _path_param("id", "send_id")
    paths: dict[str, Any] = {
        "/v1/events": {
            "post": _op(
                "Store one event or a batch of up to 1,000 (atomic, idempotent by id)",
                {"202": _answer("committed: stored / duplicate per event", results)},
                (401, 409, 413, 415, 422, 429),
                "EventsBody",
            )
        },
        "/v1/providers/{name}/webhook": {
            "parameters": _path_param("name"),
            "post": _op(
                "Provider events (outbox format: one event or a list)",
                {"202": _answer("stored / duplicate per event", results)},
                (401, 404, 413, 415, 422),
                "OutboxWebhookEvent",
            ),
        },
        "/v1/automations": {"get": _op("Applied automations", {"200": _answer("list")})},
        "/v1/automations/{id}": {
            "parameters": automation,
            "get": _op(
                "Applied version, desired and effective status, history, last reload error",
                {"200": _answer("the automation")},
                (401, 404),
            ),
        },
        "/v1/automations/{id}/trigger": {
            "parameters": automation,
            "post": _op(
                "The api trigger for one subscriber",
                {
                    "202": _answer("accepted, with pending_send_id"),
                    "200": _answer("not accepted, with the reason"),
                },
                (401, 404, 409, 413, 415, 422),
                "TriggerBody",
            ),
        },
        "/v1/automations/{id}/stats": {
            "parameters": automation,
            "get": _op(
                "Counts and rates (stats null with reason not_started for draft and scheduled)",
                {"200": _answer("stats")},
                (401, 404),
            ),
        },
        "/v1/automations/{id}/pending": {
            "parameters": automation,
            "get": _op("Pending sends (?status, ?limit)", {"200": _answer("list")}, (401, 404)),
        },
        "/v1/automations/{id}/pending/{send_id}/send-now": {
            "parameters": send,
            "post": _op(
                "Make a pending send due now", {"200": _answer("the send")}, (401, 404, 409)
            ),
        },
        "/v1/automations/{id}/pending/{send_id}": {
            "parameters": send,
            "delete": _op("Remove a pending send", {"200": _answer("the send")}, (401, 404, 409)),
        },
        "/v1/automations/{id}/pending/{send_id}/remove": {
            "parameters": send,
            "post": _op("Remove a pending send", {"200": _answer("the send")}, (401, 404, 409)),
        },
        **_subscriber_paths(),
        "/v1/outbox": {"get": _op("Outbox messages, newest first", {"200": _answer("list")})},
        "/u/{token}": {
            "parameters": _path_param("token"),
            "get": {
                "summary": "Unsubscribe confirmation page",
                "responses": {"200": {"description": "HTML form"}},
            },
            "post": {
                "summary": "RFC 8058 one-click unsubscribe (body List-Unsubscribe=One-Click)",
                "responses": {
                    "200": {"description": "unsubscribed"},
                    "404": {"description": "bad token"},
                },
            },
        },
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _answer("ok")}}},
        "/readyz": {
            "get": {
                "summary": "Store reachable and files applied",
                "responses": {"200": _answer("ready"), "503": _answer("not ready")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "text exposition format"}},
            }
        },
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": _answer("")}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Postwright runner API", "version": "1"},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"apiKey": []}, {}],
        "paths": paths,
    }
