"""Handing rendered messages to providers: batching, one outcome per message.

No store access here: the sender records the outcomes in its own short transactions, so a
transaction is never held across a provider call.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from runner.providers.base import OutgoingMessage, Provider, ProviderError, SendResult

log = logging.getLogger(__name__)

J = TypeVar("J")
Outcome = SendResult | ProviderError


@dataclass(frozen=True)
class Request(Generic[J]):
    """One provider request: a single message, or a chunk for `send_batch`."""

    provider: Provider
    jobs: list[J]
    messages: list[OutgoingMessage]


def plan_requests(
    provider: Provider, jobs: Sequence[J], messages: Sequence[OutgoingMessage]
) -> list[Request[J]]:
    """Chunks of `max_batch` when the provider batches and several messages go to it;
    one request per message otherwise."""
    size = max(1, getattr(provider, "max_batch", 1))
    if size == 1 or len(jobs) == 1:
        return [
            Request(provider, [job], [message]) for job, message in zip(jobs, messages, strict=True)
        ]
    return [
        Request(provider, list(jobs[i : i + size]), list(messages[i : i + size]))
        for i in range(0, len(jobs), size)
    ]


async def call(request: Request[J]) -> list[Outcome]:
    """Make `request`: one outcome per message, in order.

    A whole-request ProviderError is every message's outcome (the very same object, so the
    sender judges it once). Any other exception propagates (an adapter bug): the sends stay
    claimed, marked in flight, until their lease ends.
    """
    provider, messages = request.provider, request.messages
    try:
        if len(messages) == 1:
            return [await provider.send(messages[0])]
        outcomes = await provider.send_batch(messages)
    except ProviderError as error:
        return [error] * len(messages)
    if len(outcomes) != len(messages):
        # An adapter returning the wrong count must not mark the wrong sends sent.
        wrong = ProviderError(
            f"{provider.name}: batch answered {len(outcomes)} outcomes for {len(messages)}",
            retryable=False,
            outcome_unknown=True,
        )
        return [wrong] * len(messages)
    return list(outcomes)
