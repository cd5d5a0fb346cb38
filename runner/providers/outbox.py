"""The embedded `outbox` provider: the message row the sender stores IS the outbox.

Nothing leaves the runner; the message counts as sent and delivered in the stats, and
`GET /v1/outbox` lists it. Its provider message id is our message id, so provider
events posted to `/v1/providers/<name>/webhook` name messages by our id.
"""

from __future__ import annotations

from runner.providers.base import OutgoingMessage, ProviderError, SendResult


class OutboxProvider:
    """Accepts every message at once."""

    type = "outbox"
    reports_delivery = False
    idempotent = True  # nothing leaves the runner: storing twice is impossible (unique id)
    max_batch = 500

    def __init__(self, name: str) -> None:
        self.name = name

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Accept `message`; the sender's Message row keeps it."""
        return SendResult(provider_message_id=message.message_id)

    async def send_batch(self, messages: list[OutgoingMessage]) -> list[SendResult | ProviderError]:
        """Accept every message."""
        return [SendResult(provider_message_id=m.message_id) for m in messages]
