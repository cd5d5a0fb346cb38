"""Postmark: the Email API adapter (`/email`, `/email/batch`) and the event-webhook parser.

Postmark signs nothing: its webhooks are authenticated with HTTP Basic credentials set on the
webhook (https://postmarkapp.com/developer/webhooks/webhooks-overview), compared here in
constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from runner.core.config import PostmarkProvider as PostmarkSettings
from runner.core.records import MessageEvent
from runner.providers.base import (
    OutgoingMessage,
    ProviderError,
    SendResult,
    required_secret,
)
from runner.providers.http import TRANSPORT_ERRORS, classify_exception, classify_response
from runner.providers.webhooks import WebhookBatch, WebhookRejected

MAX_BATCH = 500  # https://postmarkapp.com/developer/api/email-api#send-batch-emails
SEND_ID_KEY = "postwright_send_id"
MESSAGE_ID_KEY = "postwright_message_id"
# Postmark ErrorCodes answered inside a 200 (batch items) or a 422, mapped to the HTTP status
# that carries the same meaning, so classify_response stays the one place of the retry policy.
# 10: bad or missing server token; 100: maintenance; 429: rate limit; anything else is a 422
# (406, inactive recipient, is recognised there and suppresses the subscriber).
_STATUS_OF_CODE = {10: 401, 100: 503, 429: 429}
# Bounce `Type`s that are not about delivery at all (auto-replies, address changes, ...).
_NOT_BOUNCES = frozenset(
    {"AutoResponder", "AddressChange", "Subscribe", "OpenRelayTest", "ChallengeVerification"}
)
_HARD_TYPES = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated"})
_COMPLAINT_TYPES = frozenset({"SpamComplaint", "SpamNotification"})
# RecordType -> the field holding when it happened.
_TIME_FIELDS = {
    "Delivery": "DeliveredAt",
    "Bounce": "BouncedAt",
    "SpamComplaint": "BouncedAt",
    "Open": "ReceivedAt",
    "Click": "ReceivedAt",
    "SubscriptionChange": "ChangedAt",
}


def payload(message: OutgoingMessage, stream: str) -> dict[str, Any]:
    """The JSON body of one message for `/email` (and one item of `/email/batch`)."""
    body: dict[str, Any] = {"From": message.from_, "To": message.to, "Subject": message.subject}
    if message.html is not None:
        body["HtmlBody"] = message.html
    if message.text is not None:
        body["TextBody"] = message.text
    if message.reply_to:
        body["ReplyTo"] = message.reply_to
    body["MessageStream"] = stream
    if message.tags:
        body["Tag"] = message.tags[0]  # Postmark keeps one tag per message
    # Metadata comes back in every webhook: it matches events to our message.
    body["Metadata"] = {SEND_ID_KEY: message.send_id, MESSAGE_ID_KEY: message.message_id}
    if message.headers:
        body["Headers"] = [{"Name": k, "Value": v} for k, v in message.headers.items()]
    return body


class PostmarkProvider:
    """Sends through Postmark's Email API with one server token."""

    type = "postmark"
    reports_delivery = True
    idempotent = False  # Postmark documents no idempotency key
    max_batch = MAX_BATCH

    def __init__(
        self,
        name: str,
        config: PostmarkSettings,
        secrets: Mapping[str, str],
        client: httpx.AsyncClient,
    ) -> None:
        token = required_secret(secrets, "server_token", name, "Postmark server token")
        self.name = name
        self._client = client
        self._base = config.base_url.rstrip("/")
        self._stream = config.message_stream
        self._headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "X-Postmark-Server-Token": token,
        }

    async def send(self, message: OutgoingMessage) -> SendResult:
        """POST /email; raises ProviderError unless Postmark answers 200 with ErrorCode 0."""
        response = await self._post("/email", payload(message, self._stream))
        body = _json(response)
        if response.status_code != 200:
            raise self._error(response, body)
        if not isinstance(body, dict):
            raise self._unreadable(response)
        outcome = self._item(body, response)
        if isinstance(outcome, ProviderError):
            raise outcome
        return outcome

    async def send_batch(self, messages: list[OutgoingMessage]) -> list[SendResult | ProviderError]:
        """POST /email/batch; one outcome per message from the per-item ErrorCode.

        Postmark answers 200 even when some items fail, in request order.
        """
        if not messages:
            return []
        if len(messages) > MAX_BATCH:
            raise ValueError(f"Postmark takes at most {MAX_BATCH} messages per batch")
        response = await self._post("/email/batch", [payload(m, self._stream) for m in messages])
        body = _json(response)
        if response.status_code != 200:
            raise self._error(response, body)
        if not isinstance(body, list) or len(body) != len(messages):
            # Accepted, but we cannot tell which message got which outcome.
            raise ProviderError(
                f"{self.name}: Postmark batch answer does not list one result per message",
                retryable=False,
                outcome_unknown=True,
                status=200,
            )
        return [
            self._item(item, response) if isinstance(item, dict) else self._unreadable(response)
            for item in body
        ]

    async def _post(self, path: str, body: Any) -> httpx.Response:
        content = json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            return await self._client.post(
                self._base + path, content=content, headers=self._headers
            )
        except TRANSPORT_ERRORS as error:
            raise classify_exception(error, idempotent=False, provider=self.name) from None

    def _item(self, item: dict[str, Any], response: httpx.Response) -> SendResult | ProviderError:
        code = item.get("ErrorCode")
        message_id = item.get("MessageID")
        if code == 0 and isinstance(message_id, str) and message_id:
            return SendResult(provider_message_id=message_id)
        if code == 0:
            return self._unreadable(response)
        return self._error(response, item)

    def _error(self, response: httpx.Response, body: Any) -> ProviderError:
        """Classify a refusal; a Postmark ErrorCode decides when the HTTP status cannot."""
        code = body.get("ErrorCode") if isinstance(body, dict) else None
        real = response.status_code
        if not isinstance(code, int) or real not in (200, 422):
            return classify_response(response, idempotent=False, provider=self.name)
        meaning = _STATUS_OF_CODE.get(code, 422)
        stand_in = httpx.Response(
            meaning, json=body, headers=response.headers, request=response.request
        )
        error = classify_response(stand_in, idempotent=False, provider=self.name)
        # Report what Postmark really answered, with the flags of what it meant.
        return ProviderError(
            error.message.replace(f"HTTP {meaning}:", f"HTTP {real}:", 1),
            retryable=error.retryable,
            outcome_unknown=error.outcome_unknown,
            retry_after=error.retry_after,
            auth=error.auth,
            suppress=error.suppress,
            status=real,
        )

    def _unreadable(self, response: httpx.Response) -> ProviderError:
        return ProviderError(
            f"{self.name}: Postmark accepted the message without a readable MessageID",
            retryable=False,
            outcome_unknown=True,
            status=response.status_code,
        )


def parse_webhook(
    config: PostmarkSettings,
    secrets: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> WebhookBatch:
    """Authenticate one Postmark webhook POST (HTTP Basic) and normalise its record.

    Raises WebhookRejected: 401 for missing or wrong credentials, and for every request
    while no credentials are configured (an open endpoint would let anyone suppress our
    subscribers); 400 for a body that is not a JSON object. Postmark signs no timestamp,
    so there is no time window; duplicates are caught by the derived event id.
    """
    username = secrets.get("webhook_username")
    password = secrets.get("webhook_password")
    if not username or not password:
        raise WebhookRejected(401, "Postmark webhook credentials are not configured")
    if not _basic_auth_matches(headers.get("authorization"), username, password):
        raise WebhookRejected(401, "wrong or missing HTTP Basic credentials")
    try:
        record = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected(400, "body is not JSON") from None
    if not isinstance(record, dict):
        raise WebhookRejected(400, "body is not a JSON object")
    event = _event(config, record, now)
    return WebhookBatch(events=[event] if event is not None else [], replay_keys=[])


def basic_authorization(username: str, password: str) -> str:
    """The `Authorization` header value Postmark sends for these credentials."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def _basic_auth_matches(header: str | None, username: str, password: str) -> bool:
    if header is None:
        return False
    scheme, _, encoded = header.partition(" ")
    encoded = encoded.strip()
    if scheme.lower() != "basic" or not encoded:
        return False
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return False
    # Non-canonical base64 (stray low bits in the last character) decodes to the same bytes;
    # insisting on the canonical form keeps one accepted spelling per credential.
    if base64.b64encode(raw).decode("ascii") != encoded:
        return False
    given_user, sep, given_password = raw.partition(b":")
    if not sep:
        return False
    user_ok = hmac.compare_digest(given_user, username.encode())
    password_ok = hmac.compare_digest(given_password, password.encode())
    return user_ok & password_ok  # both compared, whatever the first says


def _event(config: PostmarkSettings, record: dict[str, Any], now: datetime) -> MessageEvent | None:
    """The normalised event, or None for records we do not record (or cannot match)."""
    kind = record.get("RecordType")
    if not isinstance(kind, str) or kind not in _TIME_FIELDS:
        return None
    normalised, bounce = _classify(kind, record)
    if normalised is None:
        return None
    stamp = record.get(_TIME_FIELDS[kind])
    occurred = _parse_time(stamp)
    postmark_id = record.get("MessageID")
    message_id = _our_message_id(record) or (postmark_id if isinstance(postmark_id, str) else None)
    if occurred is None or not message_id:
        return None  # a manual suppression (no MessageID) or a malformed record: nothing to match
    url = record.get("OriginalLink") if normalised == "clicked" else None
    # Postmark gives no event id: RecordType + MessageID + the record's own timestamp is the
    # same across Postmark's retries of one record and differs between two opens or clicks.
    event_id = f"{kind}:{postmark_id or message_id}:{stamp}"
    if isinstance(url, str):  # two links clicked in the same instant stay two events
        event_id += ":" + hashlib.sha256(url.encode()).hexdigest()[:16]
    return MessageEvent(
        provider=config.type,  # record_provider_event is given the configured name
        provider_event_id=event_id,
        message_id=message_id,
        type=normalised,
        occurred_at=occurred,
        received_at=now,
        url=url if isinstance(url, str) else None,
        bounce=bounce,
    )


def _classify(kind: str, record: dict[str, Any]) -> tuple[str | None, str | None]:
    """(normalised type, bounce) of a record; (None, None) when it is not recorded."""
    if kind == "Delivery":
        return "delivered", None
    if kind == "Open":
        return "opened", None
    if kind == "Click":
        return "clicked", None
    if kind == "SpamComplaint":
        return "complained", None
    if kind == "SubscriptionChange":
        # SuppressSending false is a reactivation: nothing to record.
        return ("unsubscribed", None) if record.get("SuppressSending") is True else (None, None)
    bounce_type = record.get("Type")
    if bounce_type in _NOT_BOUNCES:
        return None, None
    if bounce_type in _COMPLAINT_TYPES:
        return "complained", None
    if bounce_type == "Unsubscribe":
        return "unsubscribed", None
    # Inactive: Postmark deactivated the address, so it refuses every later send.
    hard = record.get("Inactive") is True or bounce_type in _HARD_TYPES
    return "bounced", "hard" if hard else "soft"


def _our_message_id(record: dict[str, Any]) -> str | None:
    metadata = record.get("Metadata")
    if isinstance(metadata, dict):
        value = metadata.get(MESSAGE_ID_KEY)
        if isinstance(value, str) and value:
            return value
    return None


def _parse_time(value: object) -> datetime | None:
    """Postmark's ISO 8601 times (up to 7 fractional digits, any offset) as aware UTC."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
