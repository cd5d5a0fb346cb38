"""Mailgun: the Messages API adapter and the event-webhook parser.

Sends `POST {base_url}/v3/{domain}/messages` as multipart/form-data (the documented body) with
HTTP Basic `api:KEY`; webhooks carry an HMAC-SHA256 over `timestamp + token` inside the JSON
body, which does not cover `event-data`, so each token is single-use and the timestamp must be
within ±5 minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from runner.core.config import MailgunProvider as MailgunSettings
from runner.core.records import MessageEvent
from runner.providers.base import (
    OutgoingMessage,
    ProviderError,
    SendResult,
    required_secret,
    send_each,
)
from runner.providers.http import TRANSPORT_ERRORS, classify_exception, classify_response
from runner.providers.webhooks import WebhookBatch, WebhookRejected

US_BASE_URL = "https://api.mailgun.net"
EU_BASE_URL = "https://api.eu.mailgun.net"
TOLERANCE = 300  # seconds either side of now for the signed timestamp
MAX_TAGS = 3  # Mailgun keeps at most 3 `o:tag` values per message
SEND_ID_VARIABLE = "postwright_send_id"
MESSAGE_ID_VARIABLE = "postwright_message_id"


def base_url(config: MailgunSettings) -> str:
    """`config.base_url`, else the API host of the configured region."""
    if config.base_url:
        return config.base_url.rstrip("/")
    return EU_BASE_URL if config.region == "eu" else US_BASE_URL


def form_fields(message: OutgoingMessage) -> list[tuple[str, str]]:
    """The form fields of one message, in a stable order (repeated names allowed)."""
    fields: list[tuple[str, str]] = [
        ("from", message.from_),
        ("to", message.to),
        ("subject", message.subject),
    ]
    if message.text is not None:
        fields.append(("text", message.text))
    if message.html is not None:
        fields.append(("html", message.html))
    if message.reply_to:
        fields.append(("h:Reply-To", message.reply_to))
    for name, value in message.headers.items():
        fields.append((f"h:{name}", value))
    for tag in message.tags[:MAX_TAGS]:
        fields.append(("o:tag", tag))
    fields.append((f"v:{SEND_ID_VARIABLE}", message.send_id))
    fields.append((f"v:{MESSAGE_ID_VARIABLE}", message.message_id))
    return fields


def strip_angles(message_id: str) -> str:
    """Mailgun answers `<id@domain>`; its events name the same id without brackets."""
    text = message_id.strip()
    if text.startswith("<") and text.endswith(">"):
        return text[1:-1]
    return text


class MailgunProvider:
    """Mailgun's Messages API; no batch endpoint for distinct bodies, no idempotency key."""

    type = "mailgun"
    reports_delivery = True
    idempotent = False  # no idempotency key: a timeout after sending is `outcome_unknown`
    max_batch = 1

    def __init__(
        self,
        name: str,
        config: MailgunSettings,
        secrets: Mapping[str, str],
        client: httpx.AsyncClient,
    ) -> None:
        api_key = required_secret(secrets, "api_key", name, "Mailgun API key")
        self.name = name
        self.config = config
        self._auth = httpx.BasicAuth("api", api_key)
        self._client = client
        self.url = f"{base_url(config)}/v3/{quote(config.domain, safe='')}/messages"

    async def send(self, message: OutgoingMessage) -> SendResult:
        """POST one message; ProviderError classified by runner.providers.http."""
        # Every field as a nameless file part: httpx then encodes multipart/form-data, the body
        # Mailgun documents, without attaching a filename or content type to any part.
        parts = [(name, (None, value.encode("utf-8"))) for name, value in form_fields(message)]
        try:
            response = await self._client.post(
                self.url,
                files=parts,
                auth=self._auth,
                headers={"Accept": "application/json"},
            )
        except TRANSPORT_ERRORS as error:
            raise classify_exception(error, idempotent=False, provider=self.name) from None
        if response.status_code != 200:
            raise classify_response(response, idempotent=False, provider=self.name)
        provider_id = _response_id(response)
        if provider_id is None:
            # Accepted (200) but no id to match events with: never resend blindly.
            raise ProviderError(
                f"{self.name}: HTTP 200 without a message id",
                retryable=False,
                outcome_unknown=True,
                status=200,
            )
        return SendResult(provider_message_id=provider_id)

    async def send_batch(self, messages: list[OutgoingMessage]) -> list[SendResult | ProviderError]:
        """One request per message (max_batch is 1); each outcome in order."""
        return await send_each(self.send, messages)


def _response_id(response: httpx.Response) -> str | None:
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    value = body.get("id") if isinstance(body, dict) else None
    if not isinstance(value, str) or not strip_angles(value):
        return None
    return strip_angles(value)


# --- webhooks ---------------------------------------------------------------------------

_EVENT_TYPES = {
    "delivered": "delivered",
    "opened": "opened",
    "clicked": "clicked",
    "complained": "complained",
    "unsubscribed": "unsubscribed",
}


def signature(signing_key: str, timestamp: str, token: str) -> str:
    """Mailgun's webhook signature: hex HMAC-SHA256(signing key, timestamp + token)."""
    digest = hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256)
    return digest.hexdigest()


def parse_webhook(
    config: MailgunSettings,
    secrets: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> WebhookBatch:
    """Verify one Mailgun webhook POST and normalise its event.

    Raises WebhookRejected: 400 for a body that is not a Mailgun webhook, 401 for a wrong
    signature, a timestamp outside ±5 minutes, or no signing key configured (fail closed).
    The replay key `mailgun:{token}` must be claimed once by the endpoint (the signature does
    not cover `event-data`, so a replayed token could carry a forged event).
    """
    key = secrets.get("webhook_signing_key")
    if not key:
        raise WebhookRejected(401, "the Mailgun webhook signing key is not configured")
    payload = _json_object(body)
    signed = payload.get("signature")
    if not isinstance(signed, dict):
        raise WebhookRejected(400, "missing signature object")
    timestamp, token, given = (signed.get(name) for name in ("timestamp", "token", "signature"))
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        timestamp = str(timestamp)
    if not (isinstance(timestamp, str) and isinstance(token, str) and isinstance(given, str)):
        raise WebhookRejected(400, "signature needs timestamp, token and signature strings")
    if not (timestamp + token).isascii():  # Mailgun's are ASCII; JSON could smuggle surrogates
        raise WebhookRejected(400, "timestamp and token must be ASCII")
    expected = signature(key, timestamp, token)
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
        raise WebhookRejected(401, "signature mismatch")
    _check_time(timestamp, now)
    data = payload.get("event-data")
    if not isinstance(data, dict):
        raise WebhookRejected(400, "missing event-data object")
    event = _event(config, data, now)
    return WebhookBatch(events=[event] if event else [], replay_keys=[f"mailgun:{token}"])


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected(400, "body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "body is not a JSON object")
    return payload


def _check_time(timestamp: str, now: datetime) -> None:
    try:
        seconds = float(timestamp)
    except ValueError:
        raise WebhookRejected(400, "timestamp is not a number") from None
    if not abs(now.timestamp() - seconds) <= TOLERANCE:  # also rejects NaN
        raise WebhookRejected(401, "timestamp outside the ±5 minute tolerance")


def _event(config: MailgunSettings, data: dict[str, Any], now: datetime) -> MessageEvent | None:
    """The normalised event, or None for events we do not record (accepted, rejected, ...)."""
    kind = data.get("event")
    bounce: str | None = None
    if kind == "failed":
        severity = data.get("severity")
        bounce = "hard" if severity == "permanent" else "soft"
        normalised = "bounced"
    elif isinstance(kind, str) and kind in _EVENT_TYPES:
        normalised = _EVENT_TYPES[kind]
    else:
        return None
    message_id = _message_id(data)
    event_id = data.get("id")
    stamp = _number(data.get("timestamp"))
    if message_id is None or not isinstance(event_id, str) or stamp is None:
        return None  # nothing to match or dedupe by: not ours to record
    url = data.get("url") if normalised == "clicked" else None
    return MessageEvent(
        provider=config.type,  # record_provider_event replaces it with the configured name
        # event-data.id is only unique within a day: the timestamp makes it unique.
        provider_event_id=f"{event_id}:{stamp!r}",
        message_id=message_id,
        type=normalised,
        occurred_at=datetime.fromtimestamp(stamp, UTC),
        received_at=now,
        url=url if isinstance(url, str) else None,
        bounce=bounce,
    )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value == value else None  # NaN is not a time


def _message_id(data: dict[str, Any]) -> str | None:
    variables = data.get("user-variables")
    if isinstance(variables, dict):
        ours = variables.get(MESSAGE_ID_VARIABLE)
        if isinstance(ours, str) and ours:
            return ours
    message = data.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    theirs = headers.get("message-id") if isinstance(headers, dict) else None
    if isinstance(theirs, str) and strip_angles(theirs):
        return strip_angles(theirs)
    return None
