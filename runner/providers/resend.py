"""Resend: the Emails API adapter (single and batch, with idempotency keys) and the webhook parser.

Sends `POST {base_url}/emails` and `/emails/batch` (at most 100) with a bearer key and an
`Idempotency-Key`, so a timeout or a 409 `concurrent_idempotent_requests` is retried with the
same key and Resend answers the first response again instead of sending twice. Webhooks are
signed the Svix / Standard Webhooks way: base64 HMAC-SHA256 of `{id}.{timestamp}.{raw body}`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from runner.core.config import ResendProvider as ResendSettings
from runner.core.records import MessageEvent
from runner.providers.base import (
    IDEMPOTENCY_PREFIX,
    OutgoingMessage,
    ProviderError,
    SendResult,
    required_secret,
)
from runner.providers.http import TRANSPORT_ERRORS, classify_exception, classify_response
from runner.providers.webhooks import WebhookBatch, WebhookRejected

MAX_BATCH = 100
TOLERANCE = 300  # seconds either side of now for svix-timestamp
SEND_ID_TAG = "postwright_send_id"
MESSAGE_ID_TAG = "postwright_message_id"
# Resend tag names and values: ASCII letters, digits, underscores and dashes only.
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_TAG_MAX = 256
# Strict mode would refuse the whole batch for one invalid email; permissive queues the valid
# ones and lists the others in `errors` with their index (Resend changelog, 2025-09-19).
BATCH_VALIDATION = "permissive"


def tag_value(text: str) -> str:
    """`text` made acceptable as a Resend tag name or value."""
    return _TAG_UNSAFE.sub("_", text)[:_TAG_MAX] or "_"


def email_body(message: OutgoingMessage) -> dict[str, Any]:
    """The JSON object of one email for `/emails` or an item of `/emails/batch`."""
    body: dict[str, Any] = {"from": message.from_, "to": [message.to], "subject": message.subject}
    if message.html is not None:
        body["html"] = message.html
    if message.text is not None:
        body["text"] = message.text
    if message.reply_to:
        body["reply_to"] = message.reply_to
    if message.headers:
        body["headers"] = dict(message.headers)
    tags = [
        {"name": SEND_ID_TAG, "value": tag_value(message.send_id)},
        {"name": MESSAGE_ID_TAG, "value": tag_value(message.message_id)},
    ]
    seen = {SEND_ID_TAG, MESSAGE_ID_TAG}
    for tag in message.tags:
        name = tag_value(tag)
        if name not in seen:
            seen.add(name)
            tags.append({"name": name, "value": "true"})
    body["tags"] = tags
    return body


def batch_key(messages: list[OutgoingMessage]) -> str:
    """The Idempotency-Key of a batch: stable for the same sends in the same order.

    A retry of the same batch repeats it; a batch regrouped differently gets another key, so
    the sender must retry a failed batch with the same members (ADR in the report).
    """
    digest = hashlib.sha256("\n".join(m.send_id for m in messages).encode()).hexdigest()
    return f"{IDEMPOTENCY_PREFIX}batch-{digest[:48]}"


class ResendProvider:
    """Resend's Emails API: idempotent, batches of up to 100."""

    type = "resend"
    reports_delivery = True
    idempotent = True
    max_batch = MAX_BATCH

    def __init__(
        self,
        name: str,
        config: ResendSettings,
        secrets: Mapping[str, str],
        client: httpx.AsyncClient,
    ) -> None:
        api_key = required_secret(secrets, "api_key", name, "Resend API key")
        self.name = name
        self.config = config
        self._client = client
        self._authorization = f"Bearer {api_key}"
        base = config.base_url.rstrip("/")
        self.url = f"{base}/emails"
        self.batch_url = f"{base}/emails/batch"

    async def send(self, message: OutgoingMessage) -> SendResult:
        """POST one email with its send's idempotency key."""
        body = await self._post(self.url, email_body(message), message.idempotency_key)
        ident = body.get("id") if isinstance(body, dict) else None
        if not isinstance(ident, str) or not ident:
            raise self._no_id()
        return SendResult(provider_message_id=ident)

    async def send_batch(self, messages: list[OutgoingMessage]) -> list[SendResult | ProviderError]:
        """POST up to 100 emails in one request; per-email errors come back in place."""
        if not messages:
            return []
        if len(messages) > MAX_BATCH:
            raise ValueError(f"Resend batches hold at most {MAX_BATCH} emails")
        if len(messages) == 1:
            # The single endpoint keeps the send's own key (same as a retry through send()).
            try:
                return [await self.send(messages[0])]
            except ProviderError as error:
                return [error]
        body = await self._post(
            self.batch_url,
            [email_body(m) for m in messages],
            batch_key(messages),
            extra={"x-batch-validation": BATCH_VALIDATION},
        )
        return self._batch_results(body, len(messages))

    async def _post(
        self, url: str, payload: Any, key: str, extra: Mapping[str, str] | None = None
    ) -> Any:
        headers = {
            "Authorization": self._authorization,
            "Idempotency-Key": key,
            "Accept": "application/json",
            **(extra or {}),
        }
        try:
            response = await self._client.post(url, json=payload, headers=headers)
        except TRANSPORT_ERRORS as error:
            raise classify_exception(error, idempotent=True, provider=self.name) from None
        if not response.is_success:
            raise classify_response(response, idempotent=True, provider=self.name)
        try:
            return json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            raise self._no_id() from None

    def _no_id(self) -> ProviderError:
        # Accepted without an id: a retry would replay the same answer, so do not loop.
        return ProviderError(
            f"{self.name}: success without a message id",
            retryable=False,
            outcome_unknown=True,
        )

    def _batch_results(self, body: Any, count: int) -> list[SendResult | ProviderError]:
        data = body.get("data") if isinstance(body, dict) else None
        errors = body.get("errors") if isinstance(body, dict) else None
        failed: dict[int, str] = {}
        for item in errors if isinstance(errors, list) else []:
            if isinstance(item, dict) and isinstance(item.get("index"), int):
                failed[item["index"]] = str(item.get("message") or "rejected")
        ids = [
            item.get("id") if isinstance(item, dict) else None
            for item in (data if isinstance(data, list) else [])
        ]
        # Permissive mode lists the accepted emails in request order, skipping failed indexes.
        if len(ids) + len(failed) != count or not all(0 <= i < count for i in failed):
            error = ProviderError(
                f"{self.name}: batch answer does not match the request "
                f"({len(ids)} ids, {len(failed)} errors for {count} emails)",
                retryable=False,
                outcome_unknown=True,
            )
            return [error] * count
        results: list[SendResult | ProviderError] = []
        accepted = iter(ids)
        for index in range(count):
            if index in failed:
                message = f"{self.name}: batch item {index}: {failed[index]}"[:500]
                results.append(ProviderError(message, retryable=False, status=422))
                continue
            ident = next(accepted)
            results.append(
                SendResult(provider_message_id=ident)
                if isinstance(ident, str) and ident
                else self._no_id()
            )
        return results


# --- webhooks ---------------------------------------------------------------------------

SECRET_PREFIX = "whsec_"
_EVENT_TYPES = {
    "email.delivered": "delivered",
    "email.opened": "opened",
    "email.clicked": "clicked",
    "email.bounced": "bounced",
    "email.complained": "complained",
}


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (the prefix is optional)."""
    text = secret.strip()
    if text.startswith(SECRET_PREFIX):
        text = text[len(SECRET_PREFIX) :]
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected(401, "the Resend webhook secret is not base64") from None


def sign(key: bytes, message_id: str, timestamp: str, body: bytes) -> str:
    """The `v1` signature of one delivery: base64 HMAC-SHA256 over `{id}.{timestamp}.{body}`."""
    content = f"{message_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def parse_webhook(
    config: ResendSettings,
    secrets: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> WebhookBatch:
    """Verify one Resend (Svix) webhook POST on its raw bytes and normalise its event.

    Reads `svix-id`/`svix-timestamp`/`svix-signature`, or the `webhook-*` names of Standard
    Webhooks. Raises WebhookRejected: 400 for missing headers or a body that is not a Resend
    event, 401 for no matching signature, a timestamp outside ±5 minutes, or no usable secret
    configured (fail closed). The replay key is `resend:{svix-id}`, which is also the provider
    event id.
    """
    secret = secrets.get("webhook_secret")
    if not secret:
        raise WebhookRejected(401, "the Resend webhook secret is not configured")
    key = secret_key(secret)
    message_id = _header(headers, "id")
    timestamp = _header(headers, "timestamp")
    signatures = _header(headers, "signature")
    if not timestamp.isascii() or not timestamp.isdigit():
        raise WebhookRejected(400, "timestamp header is not an integer")
    expected = sign(key, message_id, timestamp, body).encode()
    matched = False
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        # Every entry is compared: the time taken does not say which one matched.
        if version == "v1" and hmac.compare_digest(expected, value.encode("utf-8", "replace")):
            matched = True
    if not matched:
        raise WebhookRejected(401, "no signature matches")
    if abs(now.timestamp() - int(timestamp)) > TOLERANCE:
        raise WebhookRejected(401, "timestamp outside the ±5 minute tolerance")
    event = _event(config, _json_object(body), message_id, int(timestamp), now)
    return WebhookBatch(events=[event] if event else [], replay_keys=[f"resend:{message_id}"])


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(f"svix-{name}") or headers.get(f"webhook-{name}")
    if not value:
        raise WebhookRejected(400, f"missing svix-{name} header")
    return value.strip()


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected(400, "body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "body is not a JSON object")
    return payload


def _event(
    config: ResendSettings,
    payload: dict[str, Any],
    svix_id: str,
    timestamp: int,
    now: datetime,
) -> MessageEvent | None:
    """The normalised event, or None for events we do not record (sent, delayed, ...)."""
    kind = payload.get("type")
    if not isinstance(kind, str) or kind not in _EVENT_TYPES:
        return None
    data = payload.get("data")
    if not isinstance(data, dict):
        raise WebhookRejected(400, "event without a data object")
    message_id = _message_id(data)
    if message_id is None:
        return None
    normalised = _EVENT_TYPES[kind]
    url: str | None = None
    bounce: str | None = None
    if normalised == "clicked":
        click = data.get("click")
        link = click.get("link") if isinstance(click, dict) else None
        url = link if isinstance(link, str) else None
    elif normalised == "bounced":
        details = data.get("bounce")
        kind_of = details.get("type") if isinstance(details, dict) else None
        bounce = "hard" if kind_of == "Permanent" else "soft"
    return MessageEvent(
        provider=config.type,  # record_provider_event replaces it with the configured name
        provider_event_id=svix_id,
        message_id=message_id,
        type=normalised,
        occurred_at=_occurred_at(payload.get("created_at"), timestamp),
        received_at=now,
        url=url,
        bounce=bounce,
    )


def _message_id(data: dict[str, Any]) -> str | None:
    """Our message id from the tags (a list of {name, value} or an object), else Resend's."""
    tags = data.get("tags")
    if isinstance(tags, dict):
        ours = tags.get(MESSAGE_ID_TAG)
        if isinstance(ours, str) and ours:
            return ours
    elif isinstance(tags, list):
        for tag in tags:
            if isinstance(tag, dict) and tag.get("name") == MESSAGE_ID_TAG:
                value = tag.get("value")
                if isinstance(value, str) and value:
                    return value
    theirs = data.get("email_id")
    return theirs if isinstance(theirs, str) and theirs else None


def _occurred_at(text: object, timestamp: int) -> datetime:
    if isinstance(text, str):
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            when = None
        if when is not None:
            return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    return datetime.fromtimestamp(timestamp, UTC)
