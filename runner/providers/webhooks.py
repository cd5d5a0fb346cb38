"""What a provider's `parse_webhook` returns or raises, shared by every adapter.

The endpoint verifies nothing itself: it hands the raw body and lower-cased headers to the
provider module, claims each replay key once, and records the normalised events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.core.records import MessageEvent
from runner.errors import PostwrightError


@dataclass(frozen=True)
class WebhookBatch:
    """The verified events of one webhook request and the keys that make it single-use."""

    events: list[MessageEvent] = field(default_factory=list)
    # Keys the endpoint claims once (tx.claim_once); an already-claimed key is a replay.
    replay_keys: list[str] = field(default_factory=list)


class WebhookRejected(PostwrightError):
    """A webhook request that is not authentic or not understood; `status` is the answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
