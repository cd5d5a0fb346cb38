"""Request bodies of the HTTP API as pydantic models, and their 422 error shape
(docs/events.md "Answers and errors")."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from runner.core.fields import EVENT_NAME_PATTERN
from runner.core.records import IncomingEvent
from runner.errors import PostwrightError
from runner.server import strict_json

MAX_BATCH = 1000
# No spaces, controls (NUL), or the characters that would end or split an address in a
# `To:` header (`<>`, `,`, `;`, quotes, parentheses, brackets, backslash).
_ADDRESS_PART = r'[^@\s\x00-\x1f\x7f<>()\[\],;:"\\]+'
EMAIL_PATTERN = rf"^{_ADDRESS_PART}@{_ADDRESS_PART}\.{_ADDRESS_PART}$"
# Email events come from the sender and provider feedback only: a client posting one would fake
# a delivery, an open or a click (docs/events.md, "Reserved names").
RESERVED_PREFIX = "email."
GROUP_TYPES = frozenset({"group.joined", "group.left"})

EventId = Annotated[str, Field(min_length=1, max_length=200)]
Email = Annotated[str, Field(max_length=254, pattern=EMAIL_PATTERN)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SubscriberIn(_Body):
    """The subscriber an event concerns; `fields` merge, `groups` replace."""

    email: Email
    fields: dict[str, Any] | None = None
    groups: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = None

    @field_validator("email", mode="before")
    @classmethod
    def _normalise(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


class Event(_Body):
    """One event of `POST /v1/events`."""

    id: EventId
    type: Annotated[str, Field(pattern=EVENT_NAME_PATTERN, max_length=200)]
    subscriber: SubscriberIn
    data: dict[str, Any] = Field(default_factory=dict)
    occurred_at: AwareDatetime | None = None

    @field_validator("type")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.startswith(RESERVED_PREFIX):
            raise ValueError(f"{value!r}: email.* events come from the runner and cannot be posted")
        return value

    def incoming(self, raw: Any) -> IncomingEvent:
        """The store record; `raw` is the event as posted (for the duplicate check)."""
        return IncomingEvent(
            id=self.id,
            type=self.type,
            email=self.subscriber.email,
            fields=self.subscriber.fields,
            groups=self.subscriber.groups,
            data=self.data,
            occurred_at=self.occurred_at.astimezone(UTC) if self.occurred_at else None,
            body_hash=body_hash(raw),
        )


class EventBatch(_Body):
    """`{"events": [...]}`, 1 to 1,000 events."""

    events: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=MAX_BATCH)]


class OutboxWebhookEvent(_Body):
    """A provider event for an outbox message (`POST /v1/providers/{name}/webhook`)."""

    id: EventId
    type: Literal["delivered", "opened", "clicked", "bounced", "complained", "unsubscribed"]
    message_id: Annotated[str, Field(min_length=1, max_length=200)]
    url: Annotated[str, Field(max_length=2048)] | None = None
    bounce: Literal["hard", "soft"] | None = None
    occurred_at: AwareDatetime | None = None


class TriggerBody(_Body):
    """`POST /v1/automations/{id}/trigger`: `subscriber` is an email, or an object that
    upserts the subscriber first exactly as an event would."""

    id: EventId | None = None
    subscriber: Email | SubscriberIn
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("subscriber", mode="before")
    @classmethod
    def _normalise(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def email(self) -> str:
        """The subscriber's normalised email, whichever form was posted."""
        return self.subscriber if isinstance(self.subscriber, str) else self.subscriber.email


class SubscriberPut(SubscriberIn):
    """`PUT /v1/subscribers/{email}`: `fields` merge (`null` removes a key), `groups` replace
    the set; `email`, when given, must be the address in the path."""

    email: Email | None = None  # type: ignore[assignment]  # optional here: the path names it


class UnsuppressBody(_Body):
    """`POST /v1/subscribers/{email}/unsuppress`: who lifts the suppression and why."""

    by: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    note: Annotated[str, Field(max_length=2000)] | None = None


class RequestError(PostwrightError):
    """A request body the API refuses, with the JSON answer to send."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message", ""))
        self.status = status
        self.body = body


# Built once: json.dumps with these options builds the same encoder on every call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def body_hash(raw: Any) -> str:
    """SHA-256 of the canonical JSON of `raw` (key order and spacing do not matter)."""
    return hashlib.sha256(_CANONICAL.encode(raw).encode("utf-8")).hexdigest()


def dotted(prefix: str, loc: tuple[int | str, ...]) -> str:
    """`events[3].subscriber.email` from a pydantic location under `prefix`."""
    text = prefix
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def invalid(
    error: ValidationError, kind: str, prefix: str = "", index: int | None = None
) -> RequestError:
    """A 422 naming the first wrong field (all of them under `errors`)."""
    details = [
        {"field": dotted(prefix, tuple(d["loc"])) or "(body)", "message": d["msg"]}
        for d in error.errors(include_url=False)[:50]
    ]
    body: dict[str, Any] = {"error": kind, **details[0], "errors": details}
    if index is not None:
        body["index"] = index
    return RequestError(422, body)


def parse_json(raw: bytes) -> Any:
    """The JSON value of a body, or a 422 naming where it is not acceptable JSON."""
    try:
        return strict_json.loads(raw)
    except strict_json.JsonRefused as refused:
        body = {"error": "invalid_json", "field": refused.field, "message": refused.message}
        raise RequestError(422, body) from None


def parse_events(value: Any) -> list[IncomingEvent]:
    """One event or a batch, validated whole: any problem raises a 422 naming it."""
    if isinstance(value, dict) and "events" in value:
        try:
            batch = EventBatch.model_validate(value)
        except ValidationError as error:
            raise invalid(error, "invalid_batch") from None
        raws: list[Any] = batch.events
        prefix = "events"
    else:
        raws, prefix = [value], ""
    seen: dict[str, int] = {}
    events: list[IncomingEvent] = []
    for index, raw in enumerate(raws):
        where = f"{prefix}[{index}]" if prefix else ""
        at = index if prefix else None
        try:
            event = Event.model_validate(raw)
        except ValidationError as error:
            raise invalid(error, "invalid_event", where, at) from None
        if event.type in GROUP_TYPES and not isinstance(event.data.get("group"), str):
            raise RequestError(
                422,
                {
                    "error": "invalid_event",
                    "field": dotted(where, ("data", "group")),
                    "message": f"{event.type} needs data.group (a group name)",
                    **({"index": at} if at is not None else {}),
                },
            )
        if event.id in seen:
            raise RequestError(
                422,
                {
                    "error": "duplicate_id_in_batch",
                    "field": dotted(where, ("id",)),
                    "index": index,
                    "message": f"event id {event.id!r} also used by events[{seen[event.id]}]",
                },
            )
        seen[event.id] = index
        events.append(event.incoming(raw))
    return events


def received(value: datetime | None, now: datetime) -> datetime:
    """`occurred_at` in UTC, defaulting to `now`."""
    return value.astimezone(UTC) if value is not None else now
