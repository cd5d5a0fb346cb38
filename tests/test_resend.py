"""The Resend adapter: request shape and error classes (MockTransport), the contract against
a fake Emails API with idempotency keys on a real socket, and Svix webhook verification."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pytest

from runner.core.config import ResendProvider as ResendSettings
from runner.core.records import MessageEvent
from runner.providers.base import OutgoingMessage, ProviderConfigError, ProviderError, SendResult
from runner.providers.resend import (
    ResendProvider,
    batch_key,
    email_body,
    parse_webhook,
    sign,
)
from runner.providers.webhooks import WebhookRejected
from tests.fakes.mailgun import Reply
from tests.fakes.resend import KEY_TTL, FakeResend, error
from tests.provider_mock import Handler, over_mock, provider_error

T = TypeVar("T")
KEY = "re_test"
RAW_SECRET = b"0123456789abcdef0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(RAW_SECRET).decode()
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CONFIG = ResendSettings(type="resend", api_key_env="RESEND_API_KEY")
SECRETS = {"api_key": KEY, "webhook_secret": SECRET}


def message(n: int = 1, **changes: Any) -> OutgoingMessage:
    values: dict[str, Any] = {
        "send_id": f"0190abc00000000000s{n}",
        "message_id": f"0190abc00000000000m{n}",
        "to": f"user{n}@example.test",
        "from_": "Shop <news@shop.test>",
        "reply_to": "help@shop.test",
        "subject": "Welcome",
        "html": "<p>Hello</p>",
        "text": "Hello",
        "headers": {
            "List-Unsubscribe": "<https://shop.test/u/tok>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        "tags": ["welcome", "spring sale!"],
    }
    values.update(changes)
    return OutgoingMessage(**values)


MESSAGE = message()


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def using(handler: Handler, action: Callable[[ResendProvider], Coroutine[Any, Any, T]]) -> T:
    """Run `action` on a provider over a MockTransport client, closing the client after."""
    return over_mock(
        handler, lambda http: ResendProvider("marketing", CONFIG, SECRETS, http), action
    )


def error_from(handler: Handler) -> ProviderError:
    return provider_error(lambda: using(handler, lambda provider: provider.send(MESSAGE)))


# --- request shape ----------------------------------------------------------------------


def test_request_is_json_with_bearer_and_idempotency_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"})

    result = using(handler, lambda provider: provider.send(MESSAGE))
    assert result == SendResult("49a3999c-0ce1-4ea6-ab68-afcd6dc2e794")
    request = seen[0]
    assert (request.method, str(request.url)) == ("POST", "https://api.resend.com/emails")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["idempotency-key"] == MESSAGE.idempotency_key
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "from": "Shop <news@shop.test>",
        "to": ["user1@example.test"],
        "subject": "Welcome",
        "html": "<p>Hello</p>",
        "text": "Hello",
        "reply_to": "help@shop.test",
        "headers": {
            "List-Unsubscribe": "<https://shop.test/u/tok>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        "tags": [
            {"name": "postwright_send_id", "value": MESSAGE.send_id},
            {"name": "postwright_message_id", "value": MESSAGE.message_id},
            {"name": "welcome", "value": "true"},
            {"name": "spring_sale_", "value": "true"},  # only [A-Za-z0-9_-] is allowed
        ],
    }


def test_optional_fields_are_left_out() -> None:
    body = email_body(message(reply_to=None, html=None, headers={}, tags=[]))
    assert set(body) == {"from", "to", "subject", "text", "tags"}


def test_base_url_override() -> None:
    config = CONFIG.model_copy(update={"base_url": "http://127.0.0.1:9"})
    provider = ResendProvider("m", config, SECRETS, httpx.AsyncClient())
    assert (provider.url, provider.batch_url) == (
        "http://127.0.0.1:9/emails",
        "http://127.0.0.1:9/emails/batch",
    )
    assert (provider.idempotent, provider.max_batch, provider.type) == (True, 100, "resend")


def test_missing_api_key_is_a_config_error() -> None:
    with pytest.raises(ProviderConfigError, match="API key"):
        ResendProvider("m", CONFIG, {}, httpx.AsyncClient())


# --- classification ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name", "retryable", "auth"),
    [
        (400, "invalid_idempotency_key", False, False),
        (401, "missing_api_key", False, True),
        (403, "invalid_api_Key", False, True),
        (404, "not_found", False, False),
        (409, "concurrent_idempotent_requests", True, False),
        (409, "invalid_idempotent_request", False, False),
        (422, "missing_required_field", False, False),
        (429, "rate_limit_exceeded", True, False),
        (500, "application_error", True, False),
        (503, "internal_server_error", True, False),
    ],
)
def test_status_classification(status: int, name: str, retryable: bool, auth: bool) -> None:
    body = {"statusCode": status, "name": name, "message": "said the provider"}
    caught = error_from(lambda r: httpx.Response(status, json=body))
    assert (caught.retryable, caught.auth, caught.outcome_unknown) == (retryable, auth, False)
    assert caught.status == status
    assert name in caught.message and "said the provider" in caught.message


def test_429_retry_after() -> None:
    headers = {"retry-after": "3", "ratelimit-reset": "3", "ratelimit-remaining": "0"}
    caught = error_from(lambda r: httpx.Response(429, headers=headers, json={}))
    assert caught.retryable and caught.retry_after == 3.0


@pytest.mark.parametrize("kind", [httpx.ReadTimeout, httpx.WriteTimeout, httpx.ConnectError])
def test_transport_errors_are_retryable_with_the_key(kind: type[httpx.TransportError]) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise kind("boom", request=request)

    caught = error_from(fail)
    # Retried with the key; a timeout may have reached Resend, a failed connect not.
    assert caught.retryable and caught.outcome_unknown == (kind is not httpx.ConnectError)


def test_success_without_id_is_outcome_unknown() -> None:
    caught = error_from(lambda r: httpx.Response(200, json={}))
    assert caught.outcome_unknown and not caught.retryable


# --- batch (MockTransport) --------------------------------------------------------------


def test_batch_request_and_partial_failure() -> None:
    seen: list[httpx.Request] = []
    messages = [message(1), message(2), message(3)]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = {
            "data": [{"id": "id-1"}, {"id": "id-3"}],
            "errors": [{"index": 1, "message": "Invalid `to` field."}],
        }
        return httpx.Response(200, json=answer)

    results = using(handler, lambda provider: provider.send_batch(messages))
    request = seen[0]
    assert str(request.url) == "https://api.resend.com/emails/batch"
    assert request.headers["idempotency-key"] == batch_key(messages)
    assert request.headers["x-batch-validation"] == "permissive"
    assert json.loads(request.content) == [email_body(m) for m in messages]
    assert results[0] == SendResult("id-1") and results[2] == SendResult("id-3")
    failed = results[1]
    assert isinstance(failed, ProviderError) and not failed.retryable
    assert "Invalid `to` field." in failed.message


def test_batch_answer_that_does_not_add_up_is_outcome_unknown() -> None:
    answer = {"data": [{"id": "only-one"}]}
    results = using(
        lambda r: httpx.Response(200, json=answer),
        lambda provider: provider.send_batch([message(1), message(2)]),
    )
    assert all(isinstance(r, ProviderError) and r.outcome_unknown for r in results)


def test_batch_of_one_uses_the_single_endpoint_and_the_send_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "x"})

    assert using(handler, lambda p: p.send_batch([MESSAGE])) == [SendResult("x")]
    assert seen[0].url.path == "/emails"
    assert seen[0].headers["idempotency-key"] == MESSAGE.idempotency_key


def test_batch_whole_request_failure_raises() -> None:
    with pytest.raises(ProviderError) as caught:
        using(
            lambda r: httpx.Response(503, json={"name": "internal_server_error"}),
            lambda p: p.send_batch([message(1), message(2)]),
        )
    assert caught.value.retryable


def test_batch_limits_and_key_stability() -> None:
    with pytest.raises(ValueError, match="100"):
        using(lambda r: httpx.Response(200), lambda p: p.send_batch([MESSAGE] * 101))
    assert using(lambda r: httpx.Response(200), lambda p: p.send_batch([])) == []
    two = [message(1), message(2)]
    assert batch_key(two) == batch_key([message(1), message(2)])
    assert batch_key(two) != batch_key(list(reversed(two)))
    assert len(batch_key([message(n) for n in range(100)])) <= 256


# --- contract against the fake ----------------------------------------------------------


def against(
    fake: FakeResend,
    action: Callable[[ResendProvider], Coroutine[Any, Any, T]],
    key: str = KEY,
    timeout: float = 5.0,
) -> T:
    config = CONFIG.model_copy(update={"base_url": fake.base_url})

    async def main() -> T:
        async with httpx.AsyncClient(timeout=timeout) as client:
            return await action(ResendProvider("marketing", config, {"api_key": key}, client))

    return run(main())


def outcome(
    fake: FakeResend, msg: OutgoingMessage = MESSAGE, timeout: float = 5.0
) -> SendResult | ProviderError:
    try:
        return against(fake, lambda p: p.send(msg), timeout=timeout)
    except ProviderError as caught:
        return caught


def test_contract_happy_send_and_idempotent_repeat() -> None:
    with FakeResend() as fake:
        first = against(fake, lambda p: p.send(MESSAGE))
        again = against(fake, lambda p: p.send(MESSAGE))
    assert first == again
    assert [d["id"] for d in fake.delivered] == [first.provider_message_id]  # one delivery
    assert fake.keys_seen == [MESSAGE.idempotency_key] * 2


def test_contract_wrong_key_is_auth() -> None:
    with FakeResend() as fake, pytest.raises(ProviderError) as caught:
        against(fake, lambda p: p.send(MESSAGE), key="re_wrong")
    assert caught.value.auth and caught.value.status == 403 and not fake.delivered


def test_contract_429_carries_retry_after() -> None:
    with FakeResend() as fake:
        fake.rate_limit_next(retry_after=2)
        limited = outcome(fake)
        later = outcome(fake)
    assert isinstance(limited, ProviderError) and limited.retryable
    assert limited.retry_after == 2.0
    assert isinstance(later, SendResult) and len(fake.delivered) == 1


@pytest.mark.parametrize("status", [500, 503])
def test_contract_5xx_is_retryable(status: int) -> None:
    with FakeResend() as fake:
        fake.reply_next(error(status, "internal_server_error", "Unexpected error"))
        failed = outcome(fake)
    assert isinstance(failed, ProviderError) and failed.retryable and failed.status == status


def test_contract_timeout_then_concurrent_409_then_same_id_once() -> None:
    with FakeResend() as fake:
        hold = fake.slow_next()
        timed_out = outcome(fake, timeout=0.3)
        assert hold.arrived.is_set()
        concurrent = outcome(fake)  # the first request still holds the key
        hold.release.set()
        assert hold.finished.wait(5)
        retried = outcome(fake)
    assert isinstance(timed_out, ProviderError) and timed_out.retryable
    assert isinstance(concurrent, ProviderError) and concurrent.retryable
    assert concurrent.status == 409 and "concurrent_idempotent_requests" in concurrent.message
    assert isinstance(retried, SendResult)
    assert [d["id"] for d in fake.delivered] == [retried.provider_message_id]
    assert fake.keys_seen == [MESSAGE.idempotency_key] * 3


def test_contract_same_key_other_body_is_permanent() -> None:
    with FakeResend() as fake:
        assert isinstance(outcome(fake), SendResult)
        changed = outcome(fake, message(subject="Changed"))
    assert isinstance(changed, ProviderError) and not changed.retryable
    assert changed.status == 409 and "invalid_idempotent_request" in changed.message
    assert len(fake.delivered) == 1


def test_contract_key_forgotten_after_24_hours() -> None:
    clock = [1000.0]
    with FakeResend(clock=lambda: clock[0]) as fake:
        first = outcome(fake)
        clock[0] += KEY_TTL - 1
        same = outcome(fake)
        clock[0] += 1
        new = outcome(fake)
    assert first == same and isinstance(new, SendResult) and new != first
    assert len(fake.delivered) == 2


def test_contract_batch_partial_failure_and_idempotent_repeat() -> None:
    messages = [message(1), message(2, subject=""), message(3)]
    with FakeResend() as fake:
        results = against(fake, lambda p: p.send_batch(messages))
        again = against(fake, lambda p: p.send_batch(messages))
    assert isinstance(results[0], SendResult) and isinstance(results[2], SendResult)
    assert isinstance(results[1], ProviderError) and "subject" in results[1].message
    assert [d["id"] for d in fake.delivered] == [
        results[0].provider_message_id,
        results[2].provider_message_id,
    ]
    assert [type(r) for r in again] == [type(r) for r in results]
    assert again[0] == results[0] and len(fake.delivered) == 2
    assert fake.delivered[0]["tags"][1] == {
        "name": "postwright_message_id",
        "value": messages[0].message_id,
    }


def test_fake_enforces_auth_content_type_and_fields() -> None:
    with FakeResend() as fake:
        url = f"{fake.base_url}/emails"
        bearer = {"Authorization": f"Bearer {KEY}"}
        missing = httpx.post(url, json={"from": "a@b.test"})
        form = httpx.post(url, data={"from": "a@b.test"}, headers=bearer)
        no_to = httpx.post(
            url, json={"from": "a@b.test", "subject": "s", "text": "t"}, headers=bearer
        )
        big = httpx.post(f"{url}/batch", json=[email_body(MESSAGE)] * 101, headers=bearer)
        bad_tag = httpx.post(
            url,
            json={**email_body(MESSAGE), "tags": [{"name": "a b", "value": "1"}]},
            headers=bearer,
        )
    assert (missing.status_code, missing.json()["name"]) == (401, "missing_api_key")
    assert form.status_code == 400
    assert (no_to.status_code, no_to.json()["name"]) == (422, "missing_required_field")
    assert big.status_code == 422 and bad_tag.status_code == 422
    assert not fake.delivered


def test_fake_strict_batch_refuses_everything() -> None:
    with FakeResend() as fake:
        body = [email_body(message(1)), {**email_body(message(2)), "subject": ""}]
        answer = httpx.post(
            f"{fake.base_url}/emails/batch", json=body, headers={"Authorization": f"Bearer {KEY}"}
        )
    assert answer.status_code == 422 and not fake.delivered


def test_fake_scripted_reply_is_used_once() -> None:
    with FakeResend() as fake:
        fake.reply_next(Reply(502, {"message": "bad gateway"}))
        first, second = outcome(fake), outcome(fake)
    assert isinstance(first, ProviderError) and first.status == 502
    assert isinstance(second, SendResult)


# --- webhooks ---------------------------------------------------------------------------

SVIX_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"


def payload(kind: str, **data: Any) -> bytes:
    event: dict[str, Any] = {
        "type": kind,
        "created_at": "2026-03-02T08:59:30.123Z",
        "data": {
            "created_at": "2026-03-02T08:50:00.000Z",
            "email_id": "56761188-7520-42d8-8898-ff6fc54ce618",
            "from": "Shop <news@shop.test>",
            "to": ["user1@example.test"],
            "subject": "Welcome",
            "tags": [
                {"name": "postwright_send_id", "value": "s1"},
                {"name": "postwright_message_id", "value": "0190abc00000000000m1"},
            ],
            **data,
        },
    }
    return json.dumps(event, separators=(",", ":")).encode()


def signed_headers(
    body: bytes, timestamp: int | None = None, svix_id: str = SVIX_ID, key: bytes = RAW_SECRET
) -> dict[str, str]:
    stamp = str(int(NOW.timestamp()) if timestamp is None else timestamp)
    return {
        "svix-id": svix_id,
        "svix-timestamp": stamp,
        "svix-signature": "v1," + sign(key, svix_id, stamp, body),
    }


def parse(
    body: bytes, headers: dict[str, str], secrets: dict[str, str] = SECRETS
) -> list[MessageEvent]:
    return parse_webhook(CONFIG, secrets, headers, body, NOW).events


def expected(kind: str, **extra: Any) -> MessageEvent:
    values: dict[str, Any] = {
        "provider": "resend",
        "provider_event_id": SVIX_ID,
        "message_id": "0190abc00000000000m1",
        "type": kind,
        "occurred_at": datetime(2026, 3, 2, 8, 59, 30, 123000, tzinfo=UTC),
        "received_at": NOW,
    }
    values.update(extra)
    return MessageEvent(**values)


@pytest.mark.parametrize(
    ("body", "event"),
    [
        (payload("email.delivered"), expected("delivered")),
        (payload("email.opened"), expected("opened")),
        (
            payload("email.clicked", click={"link": "https://shop.test/sale", "ipAddress": "x"}),
            expected("clicked", url="https://shop.test/sale"),
        ),
        (
            payload("email.bounced", bounce={"type": "Permanent", "subType": "General"}),
            expected("bounced", bounce="hard"),
        ),
        (
            payload("email.bounced", bounce={"type": "Transient", "subType": "MailboxFull"}),
            expected("bounced", bounce="soft"),
        ),
        (payload("email.complained"), expected("complained")),
    ],
)
def test_signed_events_are_normalised(body: bytes, event: MessageEvent) -> None:
    batch = parse_webhook(CONFIG, SECRETS, signed_headers(body), body, NOW)
    assert batch.events == [event]
    assert batch.replay_keys == [f"resend:{SVIX_ID}"]


@pytest.mark.parametrize("kind", ["email.sent", "email.delivery_delayed", "contact.created"])
def test_other_events_are_ignored(kind: str) -> None:
    body = payload(kind)
    batch = parse_webhook(CONFIG, SECRETS, signed_headers(body), body, NOW)
    assert batch.events == [] and batch.replay_keys == [f"resend:{SVIX_ID}"]


@pytest.mark.parametrize(
    ("tags", "message_id"),
    [
        ({"postwright_message_id": "ours"}, "ours"),  # tags as an object
        ([], "56761188-7520-42d8-8898-ff6fc54ce618"),  # Resend's email id
    ],
)
def test_message_id_sources(tags: Any, message_id: str) -> None:
    body = payload("email.delivered", tags=tags)
    assert parse(body, signed_headers(body))[0].message_id == message_id


def test_every_byte_flipped_is_rejected() -> None:
    body = payload("email.clicked", click={"link": "https://shop.test/sale"})
    headers = signed_headers(body)
    for index in range(len(body)):
        mutated = bytearray(body)
        mutated[index] ^= 0x01
        with pytest.raises(WebhookRejected) as caught:
            parse(bytes(mutated), headers)
        assert caught.value.status == 401, index


def test_every_header_mutation_is_rejected() -> None:
    body = payload("email.delivered")
    headers = signed_headers(body)
    for name, value in headers.items():
        for index in range(len(value)):
            changed = bytearray(value.encode())
            changed[index] ^= 0x01
            mutated = {**headers, name: changed.decode()}
            with pytest.raises(WebhookRejected):
                parse(body, mutated)
        without = {k: v for k, v in headers.items() if k != name}
        with pytest.raises(WebhookRejected) as caught:
            parse(body, without)
        assert caught.value.status == 400


def test_re_serialised_body_is_rejected() -> None:
    body = payload("email.delivered")
    pretty = json.dumps(json.loads(body), indent=2).encode()
    with pytest.raises(WebhookRejected):
        parse(pretty, signed_headers(body))


@pytest.mark.parametrize("offset", [301, -301])
def test_stale_and_future_timestamps_are_rejected(offset: int) -> None:
    body = payload("email.delivered")
    headers = signed_headers(body, timestamp=int(NOW.timestamp()) + offset)
    with pytest.raises(WebhookRejected, match="tolerance") as caught:
        parse(body, headers)
    assert caught.value.status == 401


@pytest.mark.parametrize("offset", [299, -299])
def test_timestamps_within_five_minutes_are_accepted(offset: int) -> None:
    body = payload("email.delivered")
    assert len(parse(body, signed_headers(body, timestamp=int(NOW.timestamp()) + offset))) == 1


def test_key_rotation_any_signature_matches() -> None:
    body = payload("email.delivered")
    good = signed_headers(body)
    old = signed_headers(body, key=b"an old secret that was rotated")
    rotated = {**good, "svix-signature": f"{old['svix-signature']} {good['svix-signature']}"}
    assert len(parse(body, rotated)) == 1
    with pytest.raises(WebhookRejected):
        parse(body, {**good, "svix-signature": old["svix-signature"]})
    with pytest.raises(WebhookRejected):  # only v1 (HMAC) entries count
        parse(body, {**good, "svix-signature": good["svix-signature"].replace("v1,", "v1a,")})


@pytest.mark.parametrize("secret", [SECRET, SECRET.removeprefix("whsec_")])
def test_secret_with_and_without_prefix(secret: str) -> None:
    body = payload("email.delivered")
    assert len(parse(body, signed_headers(body), {"webhook_secret": secret})) == 1


def test_standard_webhooks_header_names() -> None:
    body = payload("email.opened")
    headers = {k.replace("svix-", "webhook-"): v for k, v in signed_headers(body).items()}
    assert parse(body, headers) == [expected("opened")]


@pytest.mark.parametrize(
    ("secrets", "status"), [({}, 401), ({"webhook_secret": "whsec_!!not base64"}, 401)]
)
def test_unusable_secret_fails_closed(secrets: dict[str, str], status: int) -> None:
    body = payload("email.delivered")
    with pytest.raises(WebhookRejected) as caught:
        parse(body, signed_headers(body), secrets)
    assert caught.value.status == status


def test_signed_but_not_json_is_400() -> None:
    body = b"not json"
    with pytest.raises(WebhookRejected) as caught:
        parse(body, signed_headers(body))
    assert caught.value.status == 400


def test_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    body = payload("email.delivered")
    headers = signed_headers(body)
    headers["svix-signature"] = "v1,AAAA " + headers["svix-signature"]
    parse(body, headers)
    assert len(calls) == 2  # every entry compared, none with ==


def test_standard_webhooks_reference_vector() -> None:
    # The Standard Webhooks spec's example: the same content gives the same signature.
    key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    content = b'{"test": 2432232314}'
    assert sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", content) == (
        "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )
