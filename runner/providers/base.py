"""The provider port: what the sender hands a provider, what it gets back, how it fails.

Retry decisions read `ProviderError`'s flags, never its message (runner.providers.retry).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from runner.errors import PostwrightError

IDEMPOTENCY_PREFIX = "postwright-"


@dataclass(frozen=True)
class OutgoingMessage:
    """One rendered email for one recipient."""

    send_id: str  # the pending send: the stable source of the idempotency key
    message_id: str  # our id of the message
    to: str
    from_: str
    reply_to: str | None
    subject: str
    html: str | None
    text: str | None
    headers: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt of one pending send."""
        return IDEMPOTENCY_PREFIX + self.send_id


@dataclass(frozen=True)
class SendResult:
    """The provider accepted the message."""

    provider_message_id: str


class ProviderError(PostwrightError):
    """A provider did not accept a message.

    `retryable`: trying again is useful and safe (429, 5xx, connection refused, ...).
    `outcome_unknown`: the request may have reached the provider (a dropped connection, a
    read timeout); with `retryable` too (an idempotency key makes a repeat harmless) it is
    retried with the same key, otherwise it is never resent. `retry_after`: seconds the
    provider asked us to wait, when it said.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        outcome_unknown: bool = False,
        retry_after: float | None = None,
        auth: bool = False,
        suppress: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.outcome_unknown = outcome_unknown
        self.retry_after = retry_after
        # 401/403: the credentials are wrong; the provider's queue pauses.
        self.auth = auth
        # The provider refuses this recipient for good (Postmark ErrorCode 406: inactive
        # recipient): the subscriber is suppressed with this reason ("bounced", ...).
        self.suppress = suppress
        self.status = status  # the HTTP status, when there was a response


class ProviderConfigError(PostwrightError):
    """A configured provider cannot be built (an unsupported type, a missing secret)."""


class Provider(Protocol):
    """An email provider as the sender sees it."""

    name: str  # the name in postwright.yaml (`default`, ...)
    type: str  # outbox | postmark | sendgrid | mailgun | resend
    reports_delivery: bool  # False: a sent message counts as delivered too
    idempotent: bool  # True: requests carry an idempotency key (a timeout may be retried)
    max_batch: int  # messages per request of send_batch (1: no batch endpoint)

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Hand `message` over; raises ProviderError when it is not accepted."""
        ...

    async def send_batch(self, messages: list[OutgoingMessage]) -> list[SendResult | ProviderError]:
        """Hand over up to `max_batch` messages; one outcome per message, in order.

        Raises ProviderError when the whole request failed (then every message shares
        that outcome).
        """
        ...


def required_secret(secrets: Mapping[str, str], key: str, provider: str, what: str) -> str:
    """The secret `key` of a provider, or a ProviderConfigError naming what is missing."""
    value = secrets.get(key)
    if not value:
        raise ProviderConfigError(f"provider {provider!r}: the {what} is not set")
    return value


async def send_each(
    send: Callable[[OutgoingMessage], Awaitable[SendResult]], messages: list[OutgoingMessage]
) -> list[SendResult | ProviderError]:
    """`send_batch` of a provider without a batch endpoint: one request per message, each
    outcome in its place."""
    outcomes: list[SendResult | ProviderError] = []
    for message in messages:
        try:
            outcomes.append(await send(message))
        except ProviderError as error:
            outcomes.append(error)
    return outcomes
