"""The Mailgun adapter: request shape and error classes (MockTransport), the contract against
a fake Messages API on a real socket, and webhook verification and normalisation."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest

from runner.core.config import MailgunProvider as MailgunSettings
from runner.core.records import MessageEvent
from runner.providers.base import OutgoingMessage, ProviderConfigError, ProviderError, SendResult
from runner.providers.mailgun import (
    EU_BASE_URL,
    MailgunProvider,
    form_fields,
    parse_webhook,
    signature,
)
from runner.providers.webhooks import WebhookRejected
from tests.fakes.mailgun import FakeMailgun, Reply, parse_multipart
from tests.provider_mock import Handler, over_mock, provider_error

T = TypeVar("T")
KEY = "key-test"
SIGNING_KEY = "signing-key-0123456789"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CONFIG = MailgunSettings(type="mailgun", api_key_env="MAILGUN_API_KEY", domain="mg.example.test")
SECRETS = {"api_key": KEY, "webhook_signing_key": SIGNING_KEY}

MESSAGE = OutgoingMessage(
    send_id="0190abc0000000000001",
    message_id="0190abc000000000000m",
    to="ann@example.test",
    from_="Shop <news@mg.example.test>",
    reply_to="help@shop.test",
    subject="Welcome Ann",
    html="<p>Hello</p>",
    text="Hello",
    headers={
        "List-Unsubscribe": "<https://shop.test/u/tok>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    },
    tags=["welcome", "onboarding", "q1", "fourth"],
)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def provider_with(
    handler: Callable[[httpx.Request], httpx.Response],
    config: MailgunSettings = CONFIG,
) -> MailgunProvider:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return MailgunProvider("eu", config, SECRETS, client)


def using(handler: Handler, action: Callable[[MailgunProvider], Coroutine[Any, Any, T]]) -> T:
    """Run `action` on a provider over a MockTransport client, closing the client after."""
    return over_mock(handler, lambda http: MailgunProvider("eu", CONFIG, SECRETS, http), action)


def send_with(handler: Handler) -> SendResult:
    return using(handler, lambda provider: provider.send(MESSAGE))


def error_from(handler: Handler) -> ProviderError:
    return provider_error(lambda: send_with(handler))


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"id": "<abc.123@mg.example.test>", "message": "Queued."})


# --- request shape ----------------------------------------------------------------------


def test_request_is_multipart_with_basic_auth_and_every_field() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok(request)

    result = send_with(handler)
    assert result == SendResult("abc.123@mg.example.test")  # angle brackets stripped
    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == "https://api.mailgun.net/v3/mg.example.test/messages"
    expected_auth = "Basic " + base64.b64encode(f"api:{KEY}".encode()).decode()
    assert request.headers["authorization"] == expected_auth
    content_type = request.headers["content-type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    fields = parse_multipart(content_type, request.read())
    assert fields == [
        ("from", "Shop <news@mg.example.test>"),
        ("to", "ann@example.test"),
        ("subject", "Welcome Ann"),
        ("text", "Hello"),
        ("html", "<p>Hello</p>"),
        ("h:Reply-To", "help@shop.test"),
        ("h:List-Unsubscribe", "<https://shop.test/u/tok>"),
        ("h:List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("o:tag", "welcome"),
        ("o:tag", "onboarding"),
        ("o:tag", "q1"),  # Mailgun keeps 3 tags per message
        ("v:postwright_send_id", MESSAGE.send_id),
        ("v:postwright_message_id", MESSAGE.message_id),
    ]
    assert b"filename" not in request.read()


def test_text_only_message_has_no_html_field() -> None:
    message = OutgoingMessage("s", "m", "a@b.test", "f@b.test", None, "S", None, "T")
    names = [name for name, _ in form_fields(message)]
    assert names == [
        "from",
        "to",
        "subject",
        "text",
        "v:postwright_send_id",
        "v:postwright_message_id",
    ]


@pytest.mark.parametrize(
    ("config", "url"),
    [
        (CONFIG.model_copy(update={"region": "eu"}), f"{EU_BASE_URL}/v3/mg.example.test/messages"),
        (
            CONFIG.model_copy(update={"region": "eu", "base_url": "http://127.0.0.1:9"}),
            "http://127.0.0.1:9/v3/mg.example.test/messages",
        ),
    ],
)
def test_region_and_base_url(config: MailgunSettings, url: str) -> None:
    assert provider_with(ok, config).url == url


def test_missing_api_key_is_a_config_error() -> None:
    with pytest.raises(ProviderConfigError, match="API key"):
        MailgunProvider("eu", CONFIG, {}, httpx.AsyncClient())


def test_protocol_attributes() -> None:
    provider = provider_with(ok)
    assert (provider.type, provider.idempotent, provider.max_batch) == ("mailgun", False, 1)
    assert provider.reports_delivery is True


# --- classification ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retryable", "auth"),
    [
        (400, False, False),
        (401, False, True),
        (403, False, True),
        (404, False, False),
        (413, False, False),
        (429, True, False),
        (500, True, False),
        (502, True, False),
        (503, True, False),
    ],
)
def test_status_classification(status: int, retryable: bool, auth: bool) -> None:
    error = error_from(lambda r: httpx.Response(status, json={"message": "nope here"}))
    assert (error.retryable, error.auth, error.outcome_unknown) == (retryable, auth, False)
    assert error.status == status
    assert "nope here" in error.message


def test_429_retry_after_header_is_honoured() -> None:
    error = error_from(lambda r: httpx.Response(429, headers={"Retry-After": "12"}))
    assert error.retryable and error.retry_after == 12.0


def test_200_without_id_is_outcome_unknown() -> None:
    error = error_from(lambda r: httpx.Response(200, json={"message": "Queued."}))
    assert error.outcome_unknown and not error.retryable


def test_connect_error_is_retryable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    error = error_from(refuse)
    assert error.retryable and not error.outcome_unknown


def test_read_timeout_is_outcome_unknown_without_idempotency() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    error = error_from(hang)
    assert error.outcome_unknown and not error.retryable


def test_send_batch_sends_each_and_keeps_errors_in_place() -> None:
    answers = iter([ok, lambda r: httpx.Response(400, json={"message": "bad to"}), ok])
    results = using(lambda r: next(answers)(r), lambda provider: provider.send_batch([MESSAGE] * 3))
    assert isinstance(results[0], SendResult) and isinstance(results[2], SendResult)
    assert isinstance(results[1], ProviderError) and results[1].status == 400


# --- contract against the fake ----------------------------------------------------------


def send_real(fake: FakeMailgun, key: str = KEY, timeout: float = 5.0) -> SendResult:
    """Send MESSAGE to the fake over a real socket."""
    config = CONFIG.model_copy(update={"base_url": fake.base_url})

    async def main() -> SendResult:
        async with httpx.AsyncClient(timeout=timeout) as client:
            return await MailgunProvider("eu", config, {"api_key": key}, client).send(MESSAGE)

    return run(main())


def test_contract_happy_send_stores_the_id() -> None:
    with FakeMailgun() as fake:
        result = send_real(fake)
        assert len(fake.accepted) == 1
    fields = fake.accepted[0]
    assert result.provider_message_id.endswith("@mg.example.test")
    assert not result.provider_message_id.startswith("<")
    assert fields["v:postwright_message_id"] == [MESSAGE.message_id]
    assert fields["h:List-Unsubscribe-Post"] == ["List-Unsubscribe=One-Click"]
    assert fields["o:tag"] == ["welcome", "onboarding", "q1"]


def test_contract_wrong_key_is_auth() -> None:
    with FakeMailgun() as fake, pytest.raises(ProviderError) as caught:
        send_real(fake, key="key-wrong")
    assert caught.value.auth and caught.value.status == 401 and not fake.accepted


def test_contract_429_carries_retry_after() -> None:
    with FakeMailgun() as fake, pytest.raises(ProviderError) as caught:
        fake.rate_limit_next(retry_after=7)
        send_real(fake)
    assert caught.value.retryable and caught.value.retry_after == 7.0


@pytest.mark.parametrize("status", [500, 503])
def test_contract_5xx_is_retryable(status: int) -> None:
    with FakeMailgun() as fake, pytest.raises(ProviderError) as caught:
        fake.reply_next(Reply(status, {"message": "internal error"}))
        send_real(fake)
    assert caught.value.retryable and caught.value.status == status


def test_contract_slow_response_is_outcome_unknown_and_was_delivered() -> None:
    with FakeMailgun() as fake:
        hold = fake.slow_next()
        with pytest.raises(ProviderError) as caught:
            send_real(fake, timeout=0.2)
        assert hold.arrived.is_set()
        hold.release.set()
        assert hold.finished.wait(5)
        # Why a key-less provider must not resend: the fake did accept the message.
        assert len(fake.accepted) == 1
    assert caught.value.outcome_unknown and not caught.value.retryable


def test_fake_enforces_content_type_and_fields() -> None:
    auth = ("api", KEY)
    with FakeMailgun() as fake:
        url = f"{fake.base_url}/v3/{fake.domain}/messages"
        form = {"from": "a@b.test", "to": "c@d.test", "subject": "s", "text": "t"}
        urlencoded = httpx.post(url, data=form, auth=auth)
        missing = httpx.post(url, files=[("from", (None, b"a@b.test"))], auth=auth)
        other_domain = httpx.post(f"{fake.base_url}/v3/x.test/messages", files=[], auth=auth)
    assert urlencoded.status_code == 400 and "multipart" in urlencoded.json()["message"]
    assert missing.status_code == 400 and "'to' parameter is missing" in missing.json()["message"]
    assert other_domain.status_code == 404
    assert not fake.accepted


# --- webhooks ---------------------------------------------------------------------------

TOKEN = "a" * 50


def webhook_body(
    event_data: dict[str, Any], timestamp: int | None = None, token: str = TOKEN
) -> bytes:
    stamp = str(int(NOW.timestamp()) if timestamp is None else timestamp)
    signed = {"timestamp": stamp, "token": token, "signature": signature(SIGNING_KEY, stamp, token)}
    return json.dumps({"signature": signed, "event-data": event_data}, indent=2).encode()


def event_data(kind: str, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event": kind,
        "id": "CCXMjJ7nQi2N3BPigGOdgQ",
        "timestamp": 1772441700.372891,
        "recipient": "ann@example.test",
        "message": {"headers": {"message-id": "20260302.abc@mg.example.test"}},
        "user-variables": {"postwright_message_id": "0190abc000000000000m"},
    }
    data.update(extra)
    return data


def parse(body: bytes, now: datetime = NOW) -> list[MessageEvent]:
    return parse_webhook(CONFIG, SECRETS, {}, body, now).events


def expected(kind: str, **extra: Any) -> MessageEvent:
    values: dict[str, Any] = {
        "provider": "mailgun",
        "provider_event_id": "CCXMjJ7nQi2N3BPigGOdgQ:1772441700.372891",
        "message_id": "0190abc000000000000m",
        "type": kind,
        "occurred_at": datetime.fromtimestamp(1772441700.372891, UTC),
        "received_at": NOW,
    }
    values.update(extra)
    return MessageEvent(**values)


@pytest.mark.parametrize(
    ("data", "event"),
    [
        (event_data("delivered"), expected("delivered")),
        (event_data("opened"), expected("opened")),
        (
            event_data("clicked", url="https://shop.test/sale"),
            expected("clicked", url="https://shop.test/sale"),
        ),
        (
            event_data("failed", severity="permanent", reason="bounce"),
            expected("bounced", bounce="hard"),
        ),
        (event_data("failed", severity="temporary"), expected("bounced", bounce="soft")),
        (event_data("complained"), expected("complained")),
        (event_data("unsubscribed"), expected("unsubscribed")),
    ],
)
def test_signed_events_are_normalised(data: dict[str, Any], event: MessageEvent) -> None:
    batch = parse_webhook(CONFIG, SECRETS, {}, webhook_body(data), NOW)
    assert batch.events == [event]
    assert batch.replay_keys == [f"mailgun:{TOKEN}"]


def test_provider_message_id_when_no_user_variables() -> None:
    data = event_data("delivered")
    data["user-variables"] = {}
    data["message"] = {"headers": {"message-id": "<20260302.abc@mg.example.test>"}}
    assert parse(webhook_body(data))[0].message_id == "20260302.abc@mg.example.test"


@pytest.mark.parametrize("kind", ["accepted", "rejected", "stored"])
def test_other_events_are_ignored_but_still_claim_the_token(kind: str) -> None:
    batch = parse_webhook(CONFIG, SECRETS, {}, webhook_body(event_data(kind)), NOW)
    assert batch.events == [] and batch.replay_keys == [f"mailgun:{TOKEN}"]


def test_every_signed_byte_flipped_is_rejected() -> None:
    body = webhook_body(event_data("delivered"))
    start = body.index(b'"signature": {')
    end = body.index(b"}", start) + 1
    accepted_outside = 0
    for index in range(len(body)):
        mutated = bytearray(body)
        mutated[index] ^= 0x01
        try:
            parse(bytes(mutated))
        except WebhookRejected as rejected:
            assert rejected.status in (400, 401)
            continue
        # Mailgun signs timestamp + token only; event-data is protected by single-use tokens.
        assert not start <= index < end, f"flip at {index} inside the signature accepted"
        accepted_outside += 1
    assert accepted_outside > 0  # documents that event-data is not covered


def test_wrong_signature_and_wrong_key_are_rejected() -> None:
    body = webhook_body(event_data("delivered"))
    with pytest.raises(WebhookRejected) as caught:
        parse_webhook(CONFIG, {"webhook_signing_key": "other"}, {}, body, NOW)
    assert caught.value.status == 401
    with pytest.raises(WebhookRejected) as missing:
        parse_webhook(CONFIG, {"api_key": KEY}, {}, body, NOW)
    assert missing.value.status == 401


@pytest.mark.parametrize("offset", [301, -301, 3600])
def test_stale_and_future_timestamps_are_rejected(offset: int) -> None:
    body = webhook_body(event_data("delivered"), timestamp=int(NOW.timestamp()) + offset)
    with pytest.raises(WebhookRejected, match="tolerance"):
        parse(body)


@pytest.mark.parametrize("offset", [299, -299, 0])
def test_timestamps_within_five_minutes_are_accepted(offset: int) -> None:
    body = webhook_body(event_data("delivered"), timestamp=int(NOW.timestamp()) + offset)
    assert len(parse(body)) == 1


def test_same_token_gives_the_same_replay_key() -> None:
    first = parse_webhook(CONFIG, SECRETS, {}, webhook_body(event_data("opened")), NOW)
    later = NOW + timedelta(seconds=10)
    again = parse_webhook(CONFIG, SECRETS, {}, webhook_body(event_data("clicked")), later)
    assert first.replay_keys == again.replay_keys == [f"mailgun:{TOKEN}"]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"event-data": {}}',
        b'{"signature": {"token": "x"}}',
        b'{"signature": {"timestamp": "1", "token": "\\ud800", "signature": "x"}}',
    ],
)
def test_malformed_bodies_are_400(body: bytes) -> None:
    with pytest.raises(WebhookRejected) as caught:
        parse(body)
    assert caught.value.status == 400


def test_signature_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    parse(webhook_body(event_data("delivered")))
    assert len(calls) == 1


def test_signature_matches_the_documented_formula() -> None:
    digest = hmac.new(b"k", b"1529006854" + b"tok", hashlib.sha256).hexdigest()
    assert signature("k", "1529006854", "tok") == digest
