"""Postmark: request shape and error classification (MockTransport), the contract against a
fake Postmark on a real socket, and the Basic-auth webhook parser."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from runner.cli.settings import load_settings
from runner.core.config import PostmarkProvider as PostmarkSettings
from runner.core.records import MessageEvent
from runner.providers import build_providers
from runner.providers.base import OutgoingMessage, ProviderConfigError, ProviderError, SendResult
from runner.providers.http import make_client
from runner.providers.postmark import PostmarkProvider, basic_authorization, parse_webhook
from runner.providers.webhooks import WebhookRejected
from tests.fakes import serve
from tests.fakes.postmark import FakePostmark
from tests.provider_mock import Handler, answer, over_mock, provider_error

T = TypeVar("T")
CONFIG = PostmarkSettings(
    type="postmark",
    server_token_env="POSTMARK_TOKEN",
    webhook_username_env="POSTMARK_HOOK_USER",
    webhook_password_env="POSTMARK_HOOK_PASSWORD",
    message_stream="broadcast",
)
TOKEN = "postmark-server-token"
SECRETS = {"server_token": TOKEN, "webhook_username": "hook", "webhook_password": "s3cret-Pw"}
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
UNSUBSCRIBE = {
    "List-Unsubscribe": "<https://mail.shop.test/u/tok1>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}


def message(n: int = 1, **changes: Any) -> OutgoingMessage:
    fields: dict[str, Any] = {
        "send_id": f"send-{n}",
        "message_id": f"msg-{n}",
        "to": f"ada{n}@example.com",
        "from_": "Shop <news@shop.test>",
        "reply_to": "help@shop.test",
        "subject": "Welcome",
        "html": "<p>Hi</p>",
        "text": "Hi",
        "headers": dict(UNSUBSCRIBE),
        "tags": ["welcome", "onboarding"],
    }
    fields.update(changes)
    return OutgoingMessage(**fields)


def with_handler(handler: Handler, action: Callable[[PostmarkProvider], Awaitable[T]]) -> T:
    return over_mock(handler, lambda http: PostmarkProvider("pm", CONFIG, SECRETS, http), action)


def send_error(handler: Handler) -> ProviderError:
    return provider_error(lambda: with_handler(handler, lambda p: p.send(message())))


# --- request shape -------------------------------------------------------------------------


def test_send_posts_the_documented_request_and_returns_the_message_id() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"To": "ada1@example.com", "MessageID": "pm-1", "ErrorCode": 0}
        )

    result = with_handler(handler, lambda p: p.send(message()))
    assert result == SendResult("pm-1")
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == "https://api.postmarkapp.com/email"
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-postmark-server-token"] == TOKEN
    assert json.loads(request.content) == {
        "From": "Shop <news@shop.test>",
        "To": "ada1@example.com",
        "Subject": "Welcome",
        "HtmlBody": "<p>Hi</p>",
        "TextBody": "Hi",
        "ReplyTo": "help@shop.test",
        "MessageStream": "broadcast",
        "Tag": "welcome",
        "Metadata": {"postwright_send_id": "send-1", "postwright_message_id": "msg-1"},
        "Headers": [
            {"Name": "List-Unsubscribe", "Value": "<https://mail.shop.test/u/tok1>"},
            {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"},
        ],
    }


def test_optional_fields_are_left_out() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"MessageID": "pm-1", "ErrorCode": 0})

    bare = message(html=None, reply_to=None, tags=[], headers={})
    with_handler(handler, lambda p: p.send(bare))
    assert set(seen[0]) == {"From", "To", "Subject", "TextBody", "MessageStream", "Metadata"}


def test_missing_server_token_is_a_configuration_error() -> None:
    with pytest.raises(ProviderConfigError, match="server token"):
        PostmarkProvider("pm", CONFIG, {}, httpx.AsyncClient())


def test_provider_flags() -> None:
    provider = PostmarkProvider("pm", CONFIG, SECRETS, httpx.AsyncClient())
    assert (provider.type, provider.max_batch, provider.idempotent) == ("postmark", 500, False)
    assert provider.reports_delivery is True


# --- classification ------------------------------------------------------------------------

ERROR_ROWS = [
    # status, body, headers -> retryable, auth, suppress, outcome_unknown, retry_after
    (401, {"ErrorCode": 10, "Message": "bad token"}, None, (False, True, None, False, None)),
    (422, {"ErrorCode": 10, "Message": "bad token"}, None, (False, True, None, False, None)),
    (422, {"ErrorCode": 406, "Message": "inactive"}, None, (False, False, "bounced", False, None)),
    (422, {"ErrorCode": 300, "Message": "Invalid email"}, None, (False, False, None, False, None)),
    (422, {"ErrorCode": 429, "Message": "slow down"}, None, (True, False, None, False, None)),
    (429, {"ErrorCode": 429, "Message": "slow down"}, None, (True, False, None, False, None)),
    (429, {"ErrorCode": 429}, {"Retry-After": "7"}, (True, False, None, False, 7.0)),
    (500, {"Message": "oops"}, None, (True, False, None, False, None)),
    (503, {"ErrorCode": 100, "Message": "Maintenance"}, None, (True, False, None, False, None)),
    (413, {"ErrorCode": 300, "Message": "too big"}, None, (False, False, None, False, None)),
    (404, b"not here", None, (False, False, None, False, None)),
    (200, {"ErrorCode": 0, "Message": "OK"}, None, (False, False, None, True, None)),
    (200, b"<html>", None, (False, False, None, True, None)),
]


@pytest.mark.parametrize(("status", "body", "headers", "expected"), ERROR_ROWS)
def test_refusals_are_classified(
    status: int,
    body: Any,
    headers: dict[str, str] | None,
    expected: tuple[bool, bool, str | None, bool, float | None],
) -> None:
    error = send_error(answer(status, body, headers))
    got = (error.retryable, error.auth, error.suppress, error.outcome_unknown, error.retry_after)
    assert got == expected
    assert error.status == status
    assert TOKEN not in error.message


def test_a_refusal_keeps_postmarks_message() -> None:
    error = send_error(answer(422, {"ErrorCode": 300, "Message": "Invalid 'To' address."}))
    assert "Invalid 'To' address." in error.message


def test_connection_refused_is_retryable_and_a_read_timeout_is_outcome_unknown() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    refused = send_error(refuse)
    assert (refused.retryable, refused.outcome_unknown) == (True, False)
    stalled = send_error(stall)
    assert (stalled.retryable, stalled.outcome_unknown) == (False, True)


# --- batch ---------------------------------------------------------------------------------


def test_batch_posts_an_array_and_reads_each_items_error_code() -> None:
    seen: list[httpx.Request] = []
    items = [
        {"MessageID": "pm-1", "ErrorCode": 0, "Message": "OK"},
        {"ErrorCode": 406, "Message": "inactive recipient"},
        {"ErrorCode": 429, "Message": "rate limit"},
        {"ErrorCode": 10, "Message": "bad token"},
        {"ErrorCode": 300, "Message": "Invalid 'To' address."},
        {"ErrorCode": 0, "Message": "OK"},
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=items)

    batch = [message(n) for n in range(1, 7)]
    outcomes = with_handler(handler, lambda p: p.send_batch(batch))
    assert str(seen[0].url) == "https://api.postmarkapp.com/email/batch"
    sent = json.loads(seen[0].content)
    assert [m["Metadata"]["postwright_message_id"] for m in sent] == [m.message_id for m in batch]
    assert outcomes[0] == SendResult("pm-1")
    errors = outcomes[1:]
    assert all(isinstance(e, ProviderError) for e in errors)
    flags = [
        (e.retryable, e.auth, e.suppress, e.outcome_unknown)
        for e in errors
        if isinstance(e, ProviderError)
    ]
    assert flags == [
        (False, False, "bounced", False),
        (True, False, None, False),
        (False, True, None, False),
        (False, False, None, False),
        (False, False, None, True),
    ]
    assert isinstance(errors[3], ProviderError) and "Invalid 'To' address." in errors[3].message


def test_batch_whole_request_failures_raise() -> None:
    batch = [message(1), message(2)]
    with pytest.raises(ProviderError) as auth:
        with_handler(answer(401, {"ErrorCode": 10}), lambda p: p.send_batch(batch))
    assert auth.value.auth
    with pytest.raises(ProviderError) as short:
        with_handler(
            answer(200, [{"MessageID": "a", "ErrorCode": 0}]), lambda p: p.send_batch(batch)
        )
    assert short.value.outcome_unknown and not short.value.retryable


def test_batch_limits() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json=[])

    assert with_handler(handler, lambda p: p.send_batch([])) == []
    assert calls == []
    with pytest.raises(ValueError, match="500"):
        with_handler(handler, lambda p: p.send_batch([message(n) for n in range(501)]))


# --- contract against the fake server ------------------------------------------------------


def against(fake: FakePostmark, action: Callable[[PostmarkProvider], Awaitable[T]]) -> T:
    with serve(fake.app()) as url:
        config = CONFIG.model_copy(update={"base_url": url})

        async def main() -> T:
            async with make_client(timeout=5.0) as client:
                return await action(PostmarkProvider("pm", config, SECRETS, client))

        return asyncio.run(main())


def fake_error(fake: FakePostmark) -> ProviderError:
    with pytest.raises(ProviderError) as raised:
        against(fake, lambda p: p.send(message()))
    return raised.value


def test_fake_accepts_a_send_and_returns_its_id() -> None:
    fake = FakePostmark(token=TOKEN)
    result = against(fake, lambda p: p.send(message()))
    [stored] = fake.accepted
    assert result == SendResult(stored["MessageID"])
    assert stored["Metadata"] == {"postwright_send_id": "send-1", "postwright_message_id": "msg-1"}
    assert {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"} in stored[
        "Headers"
    ]


def test_fake_wrong_token_is_an_auth_error() -> None:
    error = fake_error(FakePostmark(token="another-token"))
    assert (error.auth, error.retryable, error.status) == (True, False, 401)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_fake_rate_limit_and_server_errors_are_retryable(status: int) -> None:
    error = fake_error(FakePostmark(token=TOKEN, status=status))
    assert (error.retryable, error.auth, error.status) == (True, False, status)


def test_fake_inactive_recipient_suppresses() -> None:
    error = fake_error(FakePostmark(token=TOKEN, refuse={"ada1@example.com": 406}))
    assert (error.suppress, error.retryable, error.status) == ("bounced", False, 422)


def test_fake_batch_partial_failure() -> None:
    fake = FakePostmark(token=TOKEN, refuse={"ada2@example.com": 406})
    outcomes = against(fake, lambda p: p.send_batch([message(1), message(2), message(3)]))
    assert [stored["To"] for stored in fake.accepted] == ["ada1@example.com", "ada3@example.com"]
    first, second, third = outcomes
    assert first == SendResult(fake.accepted[0]["MessageID"])
    assert isinstance(second, ProviderError) and second.suppress == "bounced"
    assert third == SendResult(fake.accepted[1]["MessageID"])


def test_fake_slow_answer_is_outcome_unknown() -> None:
    fake = FakePostmark(token=TOKEN, delay=0.5)
    with serve(fake.app()) as url:
        config = CONFIG.model_copy(update={"base_url": url})

        async def main() -> SendResult:
            # A generous connect timeout: only the answer is slow.
            async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=0.1)) as client:
                return await PostmarkProvider("pm", config, SECRETS, client).send(message())

        with pytest.raises(ProviderError) as raised:
            asyncio.run(main())
    assert (raised.value.outcome_unknown, raised.value.retryable) == (True, False)


def test_fake_refuses_wrong_content_type_and_missing_fields() -> None:
    fake = FakePostmark(token=TOKEN)
    good = {"From": "a@shop.test", "To": "b@example.com", "TextBody": "hi"}
    with serve(fake.app()) as url, httpx.Client(base_url=url) as client:
        token = {"X-Postmark-Server-Token": TOKEN}
        form = client.post("/email", data={"From": "a@shop.test"}, headers=token)
        missing = client.post(
            "/email", json={"From": "a@shop.test", "To": "b@example.com"}, headers=token
        )
        ok = client.post("/email", json=good, headers={**token, "Accept": "application/json"})
        no_token = client.post("/email", json=good, headers={"Accept": "application/json"})
    assert (form.status_code, form.json()["ErrorCode"]) == (422, 409)
    assert missing.status_code == 422  # the Accept header is missing as well
    assert (ok.status_code, ok.json()["ErrorCode"]) == (200, 0)
    assert (no_token.status_code, no_token.json()["ErrorCode"]) == (401, 10)
    with serve(fake.app()) as url, httpx.Client(base_url=url) as client:
        headers = {"X-Postmark-Server-Token": TOKEN, "Accept": "application/json"}
        no_body = client.post(
            "/email", json={"From": "a@shop.test", "To": "b@x.test"}, headers=headers
        )
        too_many = client.post("/email/batch", json=[good] * 501, headers=headers)
    assert (no_body.status_code, no_body.json()["ErrorCode"]) == (422, 300)
    assert (too_many.status_code, too_many.json()["ErrorCode"]) == (422, 410)
    assert len(fake.accepted) == 1


# --- webhooks ------------------------------------------------------------------------------

AUTH = {"authorization": basic_authorization("hook", "s3cret-Pw")}
PM_ID = "883953f4-6105-42a2-a16a-77a8eac79483"
LINK_HASH = hashlib.sha256(b"https://shop.test/sale").hexdigest()[:16]
OURS = {"postwright_send_id": "send-1", "postwright_message_id": "msg-1"}


def postmark_event(
    record: str,
    at: str,
    kind: str,
    occurred_at: datetime,
    *,
    message_id: str = "msg-1",
    link: bool = False,
    **extra: Any,
) -> MessageEvent:
    """The event a webhook `record` of PM_ID stamped `at` becomes (received at NOW); its id
    is `record:PM_ID:at`, with the link's hash for a click."""
    event_id = f"{record}:{PM_ID}:{at}" + (f":{LINK_HASH}" if link else "")
    return MessageEvent(
        provider="postmark",
        provider_event_id=event_id,
        message_id=message_id,
        type=kind,
        occurred_at=occurred_at,
        received_at=NOW,
        **extra,
    )


RECORDS: list[tuple[dict[str, Any], MessageEvent | None]] = [
    (
        {
            "RecordType": "Delivery",
            "ServerID": 23,
            "MessageStream": "outbound",
            "MessageID": PM_ID,
            "Recipient": "ada1@example.com",
            "Tag": "welcome",
            "DeliveredAt": "2026-03-02T08:58:10.2735393-04:00",
            "Details": "Test delivery webhook details",
            "Metadata": OURS,
        },
        postmark_event(
            "Delivery",
            "2026-03-02T08:58:10.2735393-04:00",
            "delivered",
            datetime(2026, 3, 2, 12, 58, 10, 273539, tzinfo=UTC),
        ),
    ),
    (
        {
            "RecordType": "Bounce",
            "ID": 42,
            "Type": "HardBounce",
            "TypeCode": 1,
            "MessageID": PM_ID,
            "Email": "ada1@example.com",
            "BouncedAt": "2026-03-02T08:59:00Z",
            "Inactive": True,
            "Metadata": OURS,
        },
        postmark_event(
            "Bounce",
            "2026-03-02T08:59:00Z",
            "bounced",
            datetime(2026, 3, 2, 8, 59, tzinfo=UTC),
            bounce="hard",
        ),
    ),
    (
        {
            "RecordType": "Bounce",
            "Type": "SoftBounce",
            "MessageID": PM_ID,
            "BouncedAt": "2026-03-02T08:59:00Z",
            "Inactive": False,
        },
        postmark_event(
            "Bounce",
            "2026-03-02T08:59:00Z",
            "bounced",
            datetime(2026, 3, 2, 8, 59, tzinfo=UTC),
            message_id=PM_ID,  # no Metadata: Postmark's own id
            bounce="soft",
        ),
    ),
    (
        {
            "RecordType": "Bounce",
            "Type": "Transient",
            "MessageID": PM_ID,
            "BouncedAt": "2026-03-02T08:59:00Z",
            "Inactive": True,  # Postmark deactivated the address: every later send fails
        },
        postmark_event(
            "Bounce",
            "2026-03-02T08:59:00Z",
            "bounced",
            datetime(2026, 3, 2, 8, 59, tzinfo=UTC),
            message_id=PM_ID,
            bounce="hard",
        ),
    ),
    (
        {
            "RecordType": "SpamComplaint",
            "Type": "SpamComplaint",
            "MessageID": PM_ID,
            "BouncedAt": "2026-03-02T09:00:00Z",
            "Metadata": OURS,
        },
        postmark_event(
            "SpamComplaint",
            "2026-03-02T09:00:00Z",
            "complained",
            datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        ),
    ),
    (
        {
            "RecordType": "Open",
            "FirstOpen": True,
            "MessageID": PM_ID,
            "ReceivedAt": "2026-03-02T08:00:00Z",
            "Recipient": "ada1@example.com",
            "Metadata": OURS,
        },
        postmark_event(
            "Open", "2026-03-02T08:00:00Z", "opened", datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
        ),
    ),
    (
        {
            "RecordType": "Click",
            "ClickLocation": "HTML",
            "OriginalLink": "https://shop.test/sale",
            "MessageID": PM_ID,
            "ReceivedAt": "2026-03-02T08:01:00Z",
            "Metadata": OURS,
        },
        postmark_event(
            "Click",
            "2026-03-02T08:01:00Z",
            "clicked",
            datetime(2026, 3, 2, 8, 1, tzinfo=UTC),
            link=True,
            url="https://shop.test/sale",
        ),
    ),
    (
        {
            "RecordType": "SubscriptionChange",
            "MessageID": PM_ID,
            "ChangedAt": "2026-03-02T08:30:00Z",
            "Recipient": "ada1@example.com",
            "Origin": "Recipient",
            "SuppressSending": True,
            "SuppressionReason": "ManualSuppression",
            "Metadata": OURS,
        },
        postmark_event(
            "SubscriptionChange",
            "2026-03-02T08:30:00Z",
            "unsubscribed",
            datetime(2026, 3, 2, 8, 30, tzinfo=UTC),
        ),
    ),
    # Reactivation, auto-replies, manual suppressions without a message, inbound: nothing.
    (
        {
            "RecordType": "SubscriptionChange",
            "MessageID": PM_ID,
            "ChangedAt": "2026-03-02T08:30:00Z",
            "SuppressSending": False,
        },
        None,
    ),
    (
        {
            "RecordType": "Bounce",
            "Type": "AutoResponder",
            "MessageID": PM_ID,
            "BouncedAt": "2026-03-02T08:59:00Z",
        },
        None,
    ),
    (
        {
            "RecordType": "SubscriptionChange",
            "MessageID": None,
            "ChangedAt": "2026-03-02T08:30:00Z",
            "Origin": "Customer",
            "SuppressSending": True,
        },
        None,
    ),
    ({"RecordType": "Inbound", "MessageID": PM_ID}, None),
    ({"RecordType": "Open", "MessageID": PM_ID, "ReceivedAt": "yesterday"}, None),
]


@pytest.mark.parametrize(("record", "expected"), RECORDS)
def test_webhook_records_are_normalised(
    record: dict[str, Any], expected: MessageEvent | None
) -> None:
    batch = parse_webhook(CONFIG, SECRETS, AUTH, json.dumps(record).encode(), NOW)
    assert batch.events == ([] if expected is None else [expected])
    assert batch.replay_keys == []


def test_event_ids_are_stable_across_retries_and_differ_between_opens() -> None:
    first = {"RecordType": "Open", "MessageID": PM_ID, "ReceivedAt": "2026-03-02T08:00:00Z"}
    second = {**first, "ReceivedAt": "2026-03-02T08:05:00Z"}

    def event_id(record: dict[str, Any]) -> str:
        [event] = parse_webhook(CONFIG, SECRETS, AUTH, json.dumps(record).encode(), NOW).events
        return event.provider_event_id

    assert event_id(first) == event_id(dict(first))
    assert event_id(first) != event_id(second)
    click = {"RecordType": "Click", "MessageID": PM_ID, "ReceivedAt": "2026-03-02T08:00:00Z"}
    assert event_id({**click, "OriginalLink": "https://a.test"}) != event_id(
        {**click, "OriginalLink": "https://b.test"}
    )


BODY = json.dumps(RECORDS[1][0]).encode()


def test_webhook_with_the_right_credentials_is_accepted() -> None:
    assert len(parse_webhook(CONFIG, SECRETS, AUTH, BODY, NOW).events) == 1
    lower_scheme = {"authorization": "basic " + AUTH["authorization"].split(" ", 1)[1]}
    assert len(parse_webhook(CONFIG, SECRETS, lower_scheme, BODY, NOW).events) == 1


def _rejected(headers: dict[str, str], secrets: dict[str, str] = SECRETS) -> int:
    with pytest.raises(WebhookRejected) as raised:
        parse_webhook(CONFIG, secrets, headers, BODY, NOW)
    return raised.value.status


def test_every_one_byte_change_of_the_credentials_is_rejected() -> None:
    # Postmark signs nothing: the Basic credentials are what authenticates a request.
    value = AUTH["authorization"].encode()
    for index in range(len(value)):
        mutated = bytearray(value)
        mutated[index] ^= 0x01
        header = {"authorization": mutated.decode("latin-1")}
        assert _rejected(header) == 401, index


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": ""},
        {"authorization": basic_authorization("hook", "wrong")},
        {"authorization": basic_authorization("other", "s3cret-Pw")},
        {"authorization": basic_authorization("hook", "s3cret-Pw") + "x"},
        {"authorization": "Bearer " + AUTH["authorization"].split(" ", 1)[1]},
        {"authorization": "Basic " + base64.b64encode(b"hooks3cret-Pw").decode()},
        {"authorization": "Basic not base64!"},
    ],
)
def test_wrong_or_missing_credentials_are_rejected(headers: dict[str, str]) -> None:
    assert _rejected(headers) == 401


@pytest.mark.parametrize("missing", ["webhook_username", "webhook_password"])
def test_without_configured_credentials_everything_is_rejected(missing: str) -> None:
    secrets = {k: v for k, v in SECRETS.items() if k != missing}
    empty = basic_authorization("hook" if missing == "webhook_password" else "", "s3cret-Pw")
    assert _rejected(AUTH, secrets) == 401
    assert _rejected({"authorization": empty}, secrets) == 401
    assert _rejected({"authorization": basic_authorization(":", "")}, secrets) == 401


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe"])
def test_an_authenticated_body_that_is_not_a_record_is_a_400(body: bytes) -> None:
    with pytest.raises(WebhookRejected) as raised:
        parse_webhook(CONFIG, SECRETS, AUTH, body, NOW)
    assert raised.value.status == 400


def test_the_registry_builds_the_adapter_from_settings(tmp_path: Path) -> None:
    (tmp_path / "postwright.yaml").write_text(
        "providers:\n  default:\n    type: postmark\n    server_token_env: PM_TOKEN\n",
        encoding="utf-8",
    )
    settings = load_settings(tmp_path, {"PM_TOKEN": TOKEN})

    async def main() -> None:
        providers = build_providers(settings)
        try:
            assert isinstance(providers["default"], PostmarkProvider)
        finally:
            await providers.aclose()

    asyncio.run(main())
