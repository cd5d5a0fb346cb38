"""SendGrid: request shape and error classification (MockTransport), the contract against a
fake Mail Send on a real socket, and the ECDSA-signed event webhook parser."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from runner.cli.settings import load_settings
from runner.core.config import SendgridProvider as SendgridSettings
from runner.core.records import MessageEvent
from runner.providers import build_providers
from runner.providers.base import OutgoingMessage, ProviderConfigError, ProviderError, SendResult
from runner.providers.sendgrid import (
    SendgridProvider,
    address,
    load_public_key,
    parse_webhook,
    verify,
)
from runner.providers.webhooks import WebhookRejected
from tests.fakes import serve
from tests.fakes.sendgrid import FakeSendgrid
from tests.provider_mock import Handler, answer, over_mock, provider_error

T = TypeVar("T")
CONFIG = SendgridSettings(
    type="sendgrid", api_key_env="SENDGRID_API_KEY", webhook_public_key_env="SENDGRID_HOOK_KEY"
)
API_KEY = "SG.test-key.secret"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
UNSUBSCRIBE = {
    "List-Unsubscribe": "<https://mail.shop.test/u/tok1>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}

PRIVATE_KEY = ec.generate_private_key(ec.SECP256R1())
PUBLIC_KEY = base64.b64encode(
    PRIVATE_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()
SECRETS = {"api_key": API_KEY, "webhook_public_key": PUBLIC_KEY}


def message(n: int = 1, **changes: Any) -> OutgoingMessage:
    fields: dict[str, Any] = {
        "send_id": f"send-{n}",
        "message_id": f"msg-{n}",
        "to": f"ada{n}@example.com",
        "from_": "Shop News <news@shop.test>",
        "reply_to": "Help Desk <help@shop.test>",
        "subject": "Welcome",
        "html": "<p>Hi</p>",
        "text": "Hi",
        "headers": dict(UNSUBSCRIBE),
        "tags": ["welcome", "onboarding"],
    }
    fields.update(changes)
    return OutgoingMessage(**fields)


def with_handler(handler: Handler, action: Callable[[SendgridProvider], Awaitable[T]]) -> T:
    return over_mock(handler, lambda http: SendgridProvider("sg", CONFIG, SECRETS, http), action)


def send_error(handler: Handler) -> ProviderError:
    return provider_error(lambda: with_handler(handler, lambda p: p.send(message())))


# --- request shape -------------------------------------------------------------------------


def test_send_posts_the_documented_request_and_returns_x_message_id() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, headers={"X-Message-Id": "14c5d75ce93dfd64b469"})

    assert with_handler(handler, lambda p: p.send(message())) == SendResult("14c5d75ce93dfd64b469")
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == "https://api.sendgrid.com/v3/mail/send"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    assert json.loads(request.content) == {
        "personalizations": [
            {
                "to": [{"email": "ada1@example.com"}],
                "custom_args": {"postwright_send_id": "send-1", "postwright_message_id": "msg-1"},
            }
        ],
        "from": {"email": "news@shop.test", "name": "Shop News"},
        "reply_to": {"email": "help@shop.test", "name": "Help Desk"},
        "subject": "Welcome",
        "content": [
            {"type": "text/plain", "value": "Hi"},
            {"type": "text/html", "value": "<p>Hi</p>"},
        ],
        "headers": UNSUBSCRIBE,
        "categories": ["welcome", "onboarding"],
    }


def test_optional_fields_are_left_out_and_categories_are_capped() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(202, headers={"X-Message-Id": "x"})

    bare = message(text=None, reply_to=None, tags=[], headers={})
    tagged = message(tags=["a", "a", *(f"t{n}" for n in range(12))])
    with_handler(handler, lambda p: p.send(bare))
    with_handler(handler, lambda p: p.send(tagged))
    assert set(seen[0]) == {"personalizations", "from", "subject", "content"}
    assert seen[0]["content"] == [{"type": "text/html", "value": "<p>Hi</p>"}]
    assert seen[1]["categories"] == ["a", *(f"t{n}" for n in range(9))]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("news@shop.test", {"email": "news@shop.test"}),
        ("Shop <news@shop.test>", {"email": "news@shop.test", "name": "Shop"}),
        ('"Shop, Inc." <news@shop.test>', {"email": "news@shop.test", "name": "Shop, Inc."}),
    ],
)
def test_addresses_are_split_into_email_and_name(text: str, expected: dict[str, str]) -> None:
    assert address(text) == expected


def test_a_202_without_x_message_id_falls_back_to_our_id() -> None:
    # The events still carry our id in custom_args, so they match the message.
    assert with_handler(answer(202), lambda p: p.send(message())) == SendResult("msg-1")


def test_missing_api_key_is_a_configuration_error() -> None:
    with pytest.raises(ProviderConfigError, match="API key"):
        SendgridProvider("sg", CONFIG, {}, httpx.AsyncClient())


def test_provider_flags() -> None:
    provider = SendgridProvider("sg", CONFIG, SECRETS, httpx.AsyncClient())
    assert (provider.type, provider.max_batch, provider.idempotent) == ("sendgrid", 1, False)
    assert provider.reports_delivery is True


# --- classification ------------------------------------------------------------------------

ERRORS = {"errors": [{"field": "from.email", "message": "does not match a verified Sender"}]}
ERROR_ROWS = [
    # status, body, headers -> retryable, auth, outcome_unknown
    (400, ERRORS, None, (False, False, False)),
    (401, {"errors": [{"message": "authorization required"}]}, None, (False, True, False)),
    (403, ERRORS, None, (False, True, False)),
    (406, None, None, (False, False, False)),
    (413, {"errors": [{"message": "too large"}]}, None, (False, False, False)),
    (429, {"errors": [{"message": "too many"}]}, None, (True, False, False)),
    (500, None, None, (True, False, False)),
    (503, None, None, (True, False, False)),
]


@pytest.mark.parametrize(("status", "body", "headers", "expected"), ERROR_ROWS)
def test_refusals_are_classified(
    status: int, body: Any, headers: dict[str, str] | None, expected: tuple[bool, bool, bool]
) -> None:
    error = send_error(answer(status, body, headers))
    assert (error.retryable, error.auth, error.outcome_unknown) == expected
    assert (error.status, error.suppress) == (status, None)
    assert API_KEY not in error.message


def test_a_400_keeps_sendgrids_message() -> None:
    error = send_error(answer(400, ERRORS))
    assert "from.email: does not match a verified Sender" in error.message


def test_429_waits_until_x_ratelimit_reset() -> None:
    reset = int(time.time()) + 40
    error = send_error(answer(429, None, {"X-RateLimit-Reset": str(reset)}))
    assert error.retryable and error.retry_after is not None
    assert 30 <= error.retry_after <= 40


def test_connection_refused_is_retryable_and_a_read_timeout_is_outcome_unknown() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    refused = send_error(refuse)
    assert (refused.retryable, refused.outcome_unknown) == (True, False)
    stalled = send_error(stall)
    assert (stalled.retryable, stalled.outcome_unknown) == (False, True)


def test_send_batch_is_one_request_per_message() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        to = json.loads(request.content)["personalizations"][0]["to"][0]["email"]
        seen.append(to)
        if to == "ada2@example.com":
            return httpx.Response(400, json=ERRORS)
        return httpx.Response(202, headers={"X-Message-Id": f"id-{to}"})

    outcomes = with_handler(handler, lambda p: p.send_batch([message(1), message(2), message(3)]))
    assert seen == ["ada1@example.com", "ada2@example.com", "ada3@example.com"]
    assert outcomes[0] == SendResult("id-ada1@example.com")
    assert isinstance(outcomes[1], ProviderError) and not outcomes[1].retryable
    assert outcomes[2] == SendResult("id-ada3@example.com")
    with pytest.raises(ProviderError):  # one message: the whole request failed
        with_handler(handler, lambda p: p.send_batch([message(2)]))


# --- contract against the fake server ------------------------------------------------------


def against(
    fake: FakeSendgrid, action: Callable[[SendgridProvider], Awaitable[T]], read: float = 5.0
) -> T:
    with serve(fake.app()) as url:
        config = CONFIG.model_copy(update={"base_url": url})

        async def main() -> T:
            async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=read)) as client:
                return await action(SendgridProvider("sg", config, SECRETS, client))

        return asyncio.run(main())


def fake_error(fake: FakeSendgrid, read: float = 5.0) -> ProviderError:
    with pytest.raises(ProviderError) as raised:
        against(fake, lambda p: p.send(message()), read)
    return raised.value


def test_fake_accepts_a_send_and_returns_x_message_id() -> None:
    fake = FakeSendgrid(api_key=API_KEY)
    result = against(fake, lambda p: p.send(message()))
    [stored] = fake.accepted
    assert result == SendResult(stored["x_message_id"])
    assert stored["personalizations"][0]["custom_args"]["postwright_message_id"] == "msg-1"
    assert stored["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_fake_wrong_key_is_an_auth_error() -> None:
    error = fake_error(FakeSendgrid(api_key="SG.other"))
    assert (error.auth, error.retryable, error.status) == (True, False, 401)


def test_fake_429_is_retryable_after_the_reset() -> None:
    reset = int(time.time()) + 30
    error = fake_error(FakeSendgrid(api_key=API_KEY, status=429, reset_at=reset))
    assert (error.retryable, error.status) == (True, 429)
    assert error.retry_after is not None and 20 <= error.retry_after <= 30


@pytest.mark.parametrize("status", [500, 503])
def test_fake_server_errors_are_retryable(status: int) -> None:
    error = fake_error(FakeSendgrid(api_key=API_KEY, status=status))
    assert (error.retryable, error.auth, error.status) == (True, False, status)


def test_fake_slow_answer_is_outcome_unknown() -> None:
    error = fake_error(FakeSendgrid(api_key=API_KEY, delay=0.5), read=0.1)
    assert (error.outcome_unknown, error.retryable) == (True, False)


def test_fake_refuses_wrong_content_type_and_missing_fields() -> None:
    fake = FakeSendgrid(api_key=API_KEY)
    good = {
        "personalizations": [{"to": [{"email": "b@example.com"}]}],
        "from": {"email": "a@shop.test"},
        "subject": "Hi",
        "content": [{"type": "text/plain", "value": "Hi"}],
    }
    auth = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}
    with serve(fake.app()) as url, httpx.Client(base_url=url) as client:
        form = client.post("/v3/mail/send", data={"subject": "Hi"}, headers=auth)
        no_from = client.post(
            "/v3/mail/send", json={k: v for k, v in good.items() if k != "from"}, headers=auth
        )
        html_first = client.post(
            "/v3/mail/send",
            json={**good, "content": [{"type": "text/html", "value": "x"}, *good["content"]]},
            headers=auth,
        )
        ok = client.post("/v3/mail/send", json=good, headers=auth)
    assert form.status_code == 415
    assert (no_from.status_code, no_from.json()["errors"][0]["field"]) == (400, "from.email")
    assert html_first.status_code == 400
    assert ok.status_code == 202 and ok.headers["x-message-id"]
    assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= set(ok.headers)
    assert len(fake.accepted) == 1


# --- webhooks ------------------------------------------------------------------------------

SG_ID = "W9HB2LSWQ5ObK0YxT7xiQQ"  # X-Message-Id: no dots in today's ids
STAMP = int(NOW.timestamp()) - 120


def item(event: str, n: int, **extra: Any) -> dict[str, Any]:
    return {
        "email": "ada1@example.com",
        "timestamp": STAMP,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": event,
        "category": ["welcome"],
        "sg_event_id": f"ev-{n}",
        "sg_message_id": f"{SG_ID}.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-{n}.0",
        "postwright_send_id": "send-1",
        "postwright_message_id": "msg-1",
        **extra,
    }


EVENTS = [
    item("processed", 0),
    item("deferred", 1, response="400 try again later", attempt="5"),
    item("delivered", 2, response="250 OK"),
    item("open", 3, useragent="Mozilla/5.0", ip="255.255.255.255"),
    item("click", 4, url="https://shop.test/sale", url_offset={"index": 0, "type": "html"}),
    item("bounce", 5, type="bounce", bounce_classification="Invalid Address", status="5.0.0"),
    item("bounce", 6, type="blocked", bounce_classification="Reputation", status="5.7.1"),
    item("bounce", 7, type="blocked", bounce_classification="Invalid Address"),
    item("dropped", 8, reason="Bounced Address"),
    item("dropped", 9, reason="Spam Content"),
    item("spamreport", 10),
    item("unsubscribe", 11),
    item("group_unsubscribe", 12, asm_group_id=10),
    item("group_resubscribe", 13, asm_group_id=10),
    {k: v for k, v in item("delivered", 14).items() if k != "postwright_message_id"},
    {k: v for k, v in item("open", 15).items() if k != "sg_event_id"},
]


def expected(n: int, kind: str, **extra: Any) -> MessageEvent:
    return MessageEvent(
        provider="sendgrid",
        provider_event_id=f"ev-{n}",
        message_id=extra.pop("message_id", "msg-1"),
        type=kind,
        occurred_at=datetime.fromtimestamp(STAMP, UTC),
        received_at=NOW,
        **extra,
    )


EXPECTED = [
    expected(2, "delivered"),
    expected(3, "opened"),
    expected(4, "clicked", url="https://shop.test/sale"),
    expected(5, "bounced", bounce="hard"),
    expected(6, "bounced", bounce="soft"),
    expected(7, "bounced", bounce="hard"),
    expected(8, "bounced", bounce="hard"),
    expected(10, "complained"),
    expected(11, "unsubscribed"),
    expected(12, "unsubscribed"),
    expected(14, "delivered", message_id=SG_ID),  # no custom args: X-Message-Id prefix
]
BODY = json.dumps(EVENTS).encode()


def sign(body: bytes, timestamp: str, key: ec.EllipticCurvePrivateKey = PRIVATE_KEY) -> str:
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode()


def signed(body: bytes = BODY, at: datetime = NOW) -> dict[str, str]:
    timestamp = str(int(at.timestamp()))
    return {
        "x-twilio-email-event-webhook-signature": sign(body, timestamp),
        "x-twilio-email-event-webhook-timestamp": timestamp,
        "content-type": "application/json",
    }


HEADERS = signed()


def rejected(headers: dict[str, str], body: bytes = BODY, secrets: dict[str, str] = SECRETS) -> int:
    with pytest.raises(WebhookRejected) as raised:
        parse_webhook(CONFIG, secrets, headers, body, NOW)
    return raised.value.status


def test_signed_events_are_accepted_and_normalised() -> None:
    batch = parse_webhook(CONFIG, SECRETS, HEADERS, BODY, NOW)
    assert batch.events == EXPECTED
    assert batch.replay_keys == []  # duplicates are caught per event by sg_event_id


def test_every_one_byte_change_of_the_body_is_rejected() -> None:
    for index in range(len(BODY)):
        mutated = bytearray(BODY)
        mutated[index] ^= 0x01
        assert rejected(HEADERS, bytes(mutated)) == 401, index


def test_every_one_byte_change_of_the_signature_is_rejected() -> None:
    name = "x-twilio-email-event-webhook-signature"
    value = HEADERS[name].encode()
    for index in range(len(value)):
        mutated = bytearray(value)
        mutated[index] ^= 0x01
        assert rejected({**HEADERS, name: mutated.decode("latin-1")}) == 401, index


def test_every_one_byte_change_of_the_timestamp_is_rejected() -> None:
    name = "x-twilio-email-event-webhook-timestamp"
    value = HEADERS[name].encode()
    for index in range(len(value)):
        mutated = bytearray(value)
        mutated[index] ^= 0x01
        assert rejected({**HEADERS, name: mutated.decode("latin-1")}) == 401, index


@pytest.mark.parametrize(
    "name", ["x-twilio-email-event-webhook-signature", "x-twilio-email-event-webhook-timestamp"]
)
def test_a_missing_or_emptied_header_is_rejected(name: str) -> None:
    assert rejected({k: v for k, v in HEADERS.items() if k != name}) == 401
    assert rejected({**HEADERS, name: ""}) == 401


def test_headers_signed_for_another_body_or_time_are_rejected() -> None:
    other = signed(b"[]")
    stamp = "x-twilio-email-event-webhook-timestamp"
    assert rejected(other) == 401
    assert rejected({**HEADERS, stamp: str(int(HEADERS[stamp]) + 1)}) == 401
    assert rejected({**HEADERS, stamp: " " + HEADERS[stamp]}) == 401
    another_key = ec.generate_private_key(ec.SECP256R1())
    foreign = sign(BODY, HEADERS[stamp], another_key)
    assert rejected({**HEADERS, "x-twilio-email-event-webhook-signature": foreign}) == 401


@pytest.mark.parametrize("seconds", [-301, 301, -3600, 86_400])
def test_stale_and_future_timestamps_are_rejected(seconds: int) -> None:
    assert rejected(signed(at=NOW + timedelta(seconds=seconds))) == 401


@pytest.mark.parametrize("timestamp", ["9" * 400, "-1", "1.5", "0x10"])
def test_signed_but_unreadable_timestamps_are_rejected(timestamp: str) -> None:
    headers = {
        "x-twilio-email-event-webhook-signature": sign(BODY, timestamp),
        "x-twilio-email-event-webhook-timestamp": timestamp,
    }
    assert rejected(headers) == 401


@pytest.mark.parametrize("seconds", [-299, 299, -300, 300, 0])
def test_timestamps_within_five_minutes_are_accepted(seconds: int) -> None:
    batch = parse_webhook(CONFIG, SECRETS, signed(at=NOW + timedelta(seconds=seconds)), BODY, NOW)
    assert batch.events == EXPECTED


@pytest.mark.parametrize(
    "secrets",
    [
        {"api_key": API_KEY},
        {"api_key": API_KEY, "webhook_public_key": "not a key"},
        {"api_key": API_KEY, "webhook_public_key": base64.b64encode(b"junk").decode()},
    ],
)
def test_without_a_usable_public_key_everything_is_rejected(secrets: dict[str, str]) -> None:
    assert rejected(HEADERS, secrets=secrets) == 500


@pytest.mark.parametrize("body", [b"{}", b"not json", b'{"event": "open"}'])
def test_a_signed_body_that_is_not_an_event_array_is_a_400(body: bytes) -> None:
    assert rejected(signed(body), body) == 400


def test_a_pem_public_key_is_accepted_too() -> None:
    pem = PRIVATE_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    secrets = {**SECRETS, "webhook_public_key": pem.decode()}
    assert parse_webhook(CONFIG, secrets, HEADERS, BODY, NOW).events == EXPECTED


def test_a_key_on_another_curve_is_refused() -> None:
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    der = other.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="P-256"):
        load_public_key(base64.b64encode(der).decode())


def test_sendgrids_published_test_vector_verifies() -> None:
    # The vector of SendGrid's own SDK tests (sendgrid-python, sendgrid-nodejs eventwebhook).
    key = load_public_key(
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcep"
        "xo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA=="
    )
    signature = (
        "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxF"
        "DWYNH2j/0="
    )
    payload = b'{"category":"example_payload","event":"test_event","message_id":"message_id"}'
    assert verify(key, signature, "1588788367", payload)
    assert not verify(key, signature, "1588788368", payload)


def test_the_registry_builds_the_adapter_from_settings(tmp_path: Path) -> None:
    (tmp_path / "postwright.yaml").write_text(
        "providers:\n  bulk:\n    type: sendgrid\n    api_key_env: SG_KEY\n"
        "    webhook_public_key_env: SG_HOOK_KEY\n",
        encoding="utf-8",
    )
    settings = load_settings(tmp_path, {"SG_KEY": API_KEY, "SG_HOOK_KEY": PUBLIC_KEY})
    assert settings.provider_secrets["bulk"] == SECRETS

    async def main() -> None:
        providers = build_providers(settings)
        try:
            assert isinstance(providers["bulk"], SendgridProvider)
        finally:
            await providers.aclose()

    asyncio.run(main())
