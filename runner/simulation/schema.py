"""The JSON Schema of scenario files (docs/simulate.md), written by hand and printed by
`postwright schema --scenario`."""

from __future__ import annotations

import json
from typing import Any

from runner.core.durations import DURATION_PATTERN
from runner.core.fields import EVENT_NAME_PATTERN, ID_PATTERN

SCENARIO_SCHEMA_ID = "https://postwright.dev/schema/scenario.schema.json"
RELATIVE_PATTERN = "^\\+" + DURATION_PATTERN.removeprefix("^")
INSTANT_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|z|[+-]\d{2}:\d{2})$"
EMAIL_PATTERN = r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$"
EMAIL_EVENTS = ("delivered", "opened", "clicked", "bounced", "complained", "unsubscribed")
STATUSES = ("running", "paused", "stopped")

_WHEN = {
    "description": "`+2d3h` after the scenario's start, or an ISO 8601 instant with offset",
    "type": "string",
    "anyOf": [{"pattern": RELATIVE_PATTERN}, {"pattern": INSTANT_PATTERN}],
}
_ABSOLUTE = {
    "description": "an ISO 8601 instant with offset",
    "type": "string",
    "pattern": INSTANT_PATTERN,
}
_DURATION = {"description": "a duration such as 30s, 15m, 1d12h", "type": "string"}
_DURATION["pattern"] = DURATION_PATTERN
_EMAIL = {"type": "string", "maxLength": 254, "pattern": EMAIL_PATTERN}
_ID = {"type": "string", "pattern": ID_PATTERN}
_FIELDS = {"type": "object", "description": "subscriber fields; null removes a key"}
_GROUPS = {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True}
_DATA = {"type": "object"}


def _only(kind: str, required: list[str], forbidden: list[str]) -> dict[str, Any]:
    """`if` the item names `kind`, `then` it needs `required` and may not hold `forbidden`."""
    return {
        "if": {"required": [kind]},
        "then": {
            "required": required,
            "properties": {name: False for name in forbidden},
        },
    }


_EVENT = {
    "type": "object",
    "description": "one timed event: a client event (`event`), an api trigger (`trigger`) or "
    "a provider event on an email the simulation sent (`email_event`)",
    "additionalProperties": False,
    "required": ["at"],
    "properties": {
        "at": _WHEN,
        "event": {"type": "string", "pattern": EVENT_NAME_PATTERN, "not": {"pattern": "^email\\."}},
        "trigger": _ID,
        "email_event": {"enum": list(EMAIL_EVENTS)},
        "email": _EMAIL,
        "fields": _FIELDS,
        "groups": _GROUPS,
        "data": _DATA,
        "occurred_at": _ABSOLUTE,
        "to": _EMAIL,
        "automation": _ID,
        "url": {"type": "string", "minLength": 1, "maxLength": 2048},
        "bounce": {"enum": ["hard", "soft"]},
    },
    "oneOf": [
        {"required": ["event"]},
        {"required": ["trigger"]},
        {"required": ["email_event"]},
    ],
    "allOf": [
        _only("event", ["email"], ["to", "automation", "url", "bounce", "trigger"]),
        _only("trigger", ["email"], ["to", "automation", "url", "bounce", "occurred_at"]),
        _only("email_event", ["to", "automation"], ["email", "fields", "groups", "data"]),
        {
            "if": {
                "required": ["event"],
                "properties": {"event": {"enum": ["group.joined", "group.left"]}},
            },
            "then": {
                "required": ["data"],
                "properties": {"data": {"required": ["group"]}},
            },
        },
    ],
}

_SUBSCRIBER = {
    "type": "object",
    "additionalProperties": False,
    "required": ["email"],
    "properties": {"email": _EMAIL, "fields": _FIELDS, "groups": _GROUPS},
}

_STATUS_CHANGE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["at", "automation", "status"],
    "properties": {"at": _WHEN, "automation": _ID, "status": {"enum": list(STATUSES)}},
}

_SEND = {
    "type": "object",
    "description": "an email `automation` sends to `to`, at `at` give or take `within`",
    "additionalProperties": False,
    "required": ["to", "automation"],
    "properties": {"to": _EMAIL, "automation": _ID, "at": _WHEN, "within": _DURATION},
    "dependentRequired": {"within": ["at"]},
}

_NO_SEND = {
    "type": "object",
    "description": "no email of `automation` to `to` (anyone when left out) before `before`, "
    "during [from, until), or at all",
    "additionalProperties": False,
    "required": ["automation"],
    "properties": {
        "to": _EMAIL,
        "automation": _ID,
        "before": _WHEN,
        "during": {
            "type": "object",
            "additionalProperties": False,
            "required": ["from", "until"],
            "properties": {"from": _WHEN, "until": _WHEN},
        },
    },
    "not": {"required": ["before", "during"]},
}


def scenario_schema() -> dict[str, Any]:
    """JSON Schema 2020-12 for one scenario file."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCENARIO_SCHEMA_ID,
        "title": "Postwright scenario",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "$schema": {"type": "string"},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "now": {**_ABSOLUTE, "description": "the start instant (default 2027-01-04T09:00Z)"},
            "until": {**_WHEN, "description": "the end (default: last event + 30 days)"},
            "subscribers": {"type": "array", "items": _SUBSCRIBER},
            "events": {"type": "array", "items": _EVENT},
            "status_changes": {"type": "array", "items": _STATUS_CHANGE},
            "expect": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "sends": {"type": "array", "items": _SEND},
                    "no_sends": {"type": "array", "items": _NO_SEND},
                },
            },
        },
    }


def scenario_schema_text() -> str:
    """The schema as JSON text (stable key order, trailing newline)."""
    return json.dumps(scenario_schema(), indent=2, ensure_ascii=False) + "\n"
