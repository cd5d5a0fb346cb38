"""SendGrid: the v3 Mail Send adapter and the Signed Event Webhook parser.

Mail Send answers 202 with the message id in the `X-Message-Id` header. Event webhooks are
signed with ECDSA P-256 (SHA-256) over `timestamp + raw body`
(https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from runner.core.config import SendgridProvider as SendgridSettings
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

SEND_PATH = "/v3/mail/send"
SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"
TOLERANCE = 300  # seconds either side of now for the signed timestamp
MAX_CATEGORIES = 10  # SendGrid refuses more categories per message
SEND_ID_KEY = "postwright_send_id"
MESSAGE_ID_KEY = "postwright_message_id"
# Event names recorded as they are; bounce and dropped need a closer look (_normalise).
_EVENT_TYPES = {
    "delivered": "delivered",
    "open": "opened",
    "click": "clicked",
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}
# `dropped` reasons that mean SendGrid already suppresses the address for good.
_DROPPED = {
    "Bounced Address": ("bounced", "hard"),
    "Unsubscribed Address": ("unsubscribed", None),
    "Spam Reporting Address": ("complained", None),
}


def address(text: str) -> dict[str, str]:
    """`Name <addr>` or a bare address as SendGrid's `{email, name?}` object."""
    name, email = parseaddr(text)
    result = {"email": email or text.strip()}
    if name:
        result["name"] = name
    return result


def payload(message: OutgoingMessage) -> dict[str, Any]:
    """The JSON body of one message for `/v3/mail/send`."""
    personalization = {
        "to": [address(message.to)],
        # custom_args come back as top-level fields of every event of this message.
        "custom_args": {SEND_ID_KEY: message.send_id, MESSAGE_ID_KEY: message.message_id},
    }
    body: dict[str, Any] = {
        "personalizations": [personalization],
        "from": address(message.from_),
        "subject": message.subject,
    }
    if message.reply_to:
        body["reply_to"] = address(message.reply_to)
    content = []  # SendGrid requires text/plain before text/html
    if message.text is not None:
        content.append({"type": "text/plain", "value": message.text})
    if message.html is not None:
        content.append({"type": "text/html", "value": message.html})
    body["content"] = content
    if message.headers:
        body["headers"] = dict(message.headers)
    if message.tags:
        body["categories"] = list(dict.fromkeys(message.tags))[:MAX_CATEGORIES]
    return body


class SendgridProvider:
    """Sends through SendGrid's v3 Mail Send with one API key, one message per request."""

    type = "sendgrid"
    reports_delivery = True
    idempotent = False  # SendGrid documents no idempotency key
    max_batch = 1  # one personalization per request keeps one X-Message-Id per message

    def __init__(
        self,
        name: str,
        config: SendgridSettings,
        secrets: Mapping[str, str],
        client: httpx.AsyncClient,
    ) -> None:
        key = required_secret(secrets, "api_key", name, "SendGrid API key")
        self.name = name
        self._client = client
        self._url = config.base_url.rstrip("/") + SEND_PATH
        self._headers = {
            "Authorization": f"Bearer {key}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        }

    async def send(self, message: OutgoingMessage) -> SendResult:
        """POST /v3/mail/send; the id is the `X-Message-Id` header of the 202."""
        content = json.dumps(payload(message), ensure_ascii=False).encode("utf-8")
        try:
            response = await self._client.post(self._url, content=content, headers=self._headers)
        except TRANSPORT_ERRORS as error:
            raise classify_exception(error, idempotent=False, provider=self.name) from None
        if not 200 <= response.status_code < 300:
            raise classify_response(response, idempotent=False, provider=self.name)
        message_id = response.headers.get("x-message-id", "").strip()
        # Without the header the message was still accepted; its events carry our id in
        # custom_args, so our own message id matches them.
        return SendResult(provider_message_id=message_id or message.message_id)

    async def send_batch(self, messages: list[OutgoingMessage]) -> list[SendResult | ProviderError]:
        """One request per message (max_batch is 1); one outcome per message, in order."""
        if len(messages) == 1:
            return [await self.send(messages[0])]  # a whole-request failure raises
        return await send_each(self.send, messages)


def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid shows it: base64 DER SubjectPublicKeyInfo (PEM too).

    Raises ValueError when it is not a P-256 public key.
    """
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode("ascii"))
    else:
        try:
            der = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the SendGrid webhook key is not base64") from None
        key = serialization.load_der_public_key(der)
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the SendGrid webhook key is not an ECDSA P-256 public key")
    return key


def verify(key: ec.EllipticCurvePublicKey, signature: str, timestamp: str, body: bytes) -> bool:
    """Whether `signature` (base64 DER) signs `timestamp + body` with `key`."""
    try:
        der = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    # Non-canonical base64 (stray low bits) decodes to the same bytes: one spelling only.
    if base64.b64encode(der).decode("ascii") != signature:
        return False
    try:
        key.verify(der, timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def parse_webhook(
    config: SendgridSettings,
    secrets: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> WebhookBatch:
    """Verify one Signed Event Webhook POST and normalise its events.

    Raises WebhookRejected: 500 without a usable public key (SendGrid retries for 24 h,
    so events survive the fix), 401 for a missing or wrong signature or a signed timestamp
    outside ±5 minutes, 400 for a body that is not a JSON array. Duplicates (SendGrid
    sends some) are caught per event by `sg_event_id`, so there are no replay keys.
    """
    key_text = secrets.get("webhook_public_key")
    if not key_text:
        raise WebhookRejected(500, "the SendGrid webhook public key is not configured")
    try:
        key = load_public_key(key_text)
    except ValueError as error:
        raise WebhookRejected(500, str(error)) from None
    signature = headers.get(SIGNATURE_HEADER)
    timestamp = headers.get(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise WebhookRejected(401, "missing signature or timestamp header")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise WebhookRejected(401, "the signed timestamp is not a number of seconds")
    if not verify(key, signature, timestamp, body):
        raise WebhookRejected(401, "signature mismatch")
    if abs(now.timestamp() - int(timestamp)) > TOLERANCE:
        raise WebhookRejected(401, "timestamp outside the ±5 minute tolerance")
    try:
        items = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected(400, "body is not JSON") from None
    if not isinstance(items, list):
        raise WebhookRejected(400, "body is not a JSON array of events")
    events = [_event(config, item, now) for item in items if isinstance(item, dict)]
    return WebhookBatch(events=[e for e in events if e is not None], replay_keys=[])


def _event(config: SendgridSettings, item: dict[str, Any], now: datetime) -> MessageEvent | None:
    """The normalised event, or None for events we do not record (processed, deferred, ...)."""
    normalised, bounce = _normalise(item)
    event_id = item.get("sg_event_id")
    stamp = item.get("timestamp")
    message_id = _message_id(item)
    if normalised is None or not isinstance(event_id, str) or not event_id or not message_id:
        return None
    if not isinstance(stamp, int | float) or isinstance(stamp, bool):
        return None
    url = item.get("url") if normalised == "clicked" else None
    return MessageEvent(
        provider=config.type,  # record_provider_event is given the configured name
        provider_event_id=event_id,
        message_id=message_id,
        type=normalised,
        occurred_at=datetime.fromtimestamp(stamp, UTC),
        received_at=now,
        url=url if isinstance(url, str) else None,
        bounce=bounce,
    )


def _normalise(item: dict[str, Any]) -> tuple[str | None, str | None]:
    kind = item.get("event")
    if kind == "bounce":
        # type "blocked" is a refusal of this message (reputation, content), not of the
        # address, unless SendGrid classifies it as an invalid address.
        blocked = item.get("type") == "blocked"
        invalid = item.get("bounce_classification") == "Invalid Address"
        return "bounced", "soft" if blocked and not invalid else "hard"
    if kind == "dropped":
        return _DROPPED.get(str(item.get("reason")), (None, None))
    if isinstance(kind, str) and kind in _EVENT_TYPES:
        return _EVENT_TYPES[kind], None
    return None, None  # processed, deferred (SendGrid keeps retrying), group_resubscribe, ...


def _message_id(item: dict[str, Any]) -> str | None:
    ours = item.get(MESSAGE_ID_KEY)  # custom_args are flattened into the event
    if isinstance(ours, str) and ours:
        return ours
    theirs = item.get("sg_message_id")
    if isinstance(theirs, str) and theirs:
        # sg_message_id is the X-Message-Id followed by ".filter..." routing details.
        return theirs.split(".", 1)[0]
    return None
