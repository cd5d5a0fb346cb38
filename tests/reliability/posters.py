"""Clients posting events concurrently to a server that may die under them, and the ledger
of what they were told.

Each event names its own subscriber, so every event must end as exactly one send. An event
posted without an answer (the server died) is kept and posted again later under the same
id, as a client that retries does; `acknowledged` holds every event answered 202.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.reliability.served import WAIT

BATCH_SIZES = (1, 1, 1, 3, 10)  # events per request: mostly single events, some batches
CLIENTS = 4  # posting concurrently


@dataclass
class Ledger:
    """Every event posted, by id."""

    acknowledged: dict[str, str] = field(default_factory=dict)  # id -> email, answered 202
    unanswered: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> event
    created: int = 0
    requests: int = 0
    duplicates: int = 0  # events answered "duplicate": stored before an answer was lost

    def next_batch(self, rng: random.Random, round_: int, until: int) -> list[dict[str, Any]]:
        """Events for the next request: unanswered ones first, then new ones while fewer
        than `until` were created."""
        size = rng.choice(BATCH_SIZES)
        batch = [self.unanswered.pop(key) for key in list(self.unanswered)[:size]]
        while len(batch) < size and self.created < until:
            number = self.created
            self.created += 1
            batch.append(
                {
                    "id": f"r{round_}-e{number}",
                    "type": "signup",
                    "subscriber": {"email": f"p{number}@shop.test"},
                }
            )
        return batch

    def answered(self, batch: list[dict[str, Any]], answer: httpx.Response) -> None:
        """Record the answer to `batch`; anything but 202 fails the test."""
        assert answer.status_code == 202, answer.text
        results = answer.json()["results"]
        assert [r["id"] for r in results] == [e["id"] for e in batch]
        assert {r["status"] for r in results} <= {"stored", "duplicate"}, results
        self.duplicates += sum(r["status"] == "duplicate" for r in results)
        for event in batch:
            self.acknowledged[event["id"]] = event["subscriber"]["email"]

    def lost(self, batch: list[dict[str, Any]]) -> None:
        """No answer to `batch`: post it again later."""
        for event in batch:
            self.unanswered[event["id"]] = event


async def post_events(
    url: str, ledger: Ledger, rng: random.Random, round_: int, new_events: int
) -> None:
    """CLIENTS concurrent clients post every unanswered event and `new_events` new ones to
    `url`, until all are answered or the server dies."""
    until = ledger.created + new_events

    async def client(http: httpx.AsyncClient) -> None:
        while batch := ledger.next_batch(rng, round_, until):
            body: Any = batch[0] if len(batch) == 1 and rng.random() < 0.5 else {"events": batch}
            ledger.requests += 1
            try:
                answer = await http.post(f"{url}/v1/events", json=body)
            except httpx.TransportError:  # the server died (loopback fails no other way)
                ledger.lost(batch)
                return
            ledger.answered(batch, answer)

    async with httpx.AsyncClient(timeout=WAIT) as http:
        await asyncio.gather(*(client(http) for _ in range(CLIENTS)))
