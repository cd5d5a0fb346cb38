"""Sends in flight: the request stored durably before it is written to a provider.

A claimed send found with such a mark after a crash or an expired lease was interrupted
mid-request, so the provider may have accepted it. With an idempotency key the very same
request is repeated under the same key (a repeat is harmless); without one the send becomes
`outcome_unknown` and provider events reconcile it. The mark keeps the exact message and,
for a batch, its members in order, because a repeat must carry the same body under the
same key (Resend answers 409 to a key reused with another body).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runner.core.records import PendingSend
from runner.engine.outcomes import Attempt, Ready
from runner.providers.base import OutgoingMessage
from runner.store.base import Store, WriteTx
from runner.store.claims import JsonText
from runner.store.rows import dumps


@dataclass(frozen=True)
class InFlight:
    """One send's request as it was handed to a provider."""

    provider: str  # the provider's name in postwright.yaml
    provider_type: str
    since: datetime  # when it was handed over: the message's sent time if it went out
    revision: int  # the automation revision the message was rendered with
    message: OutgoingMessage
    batch: tuple[str, ...] = ()  # the send ids of its batch request in order; () if alone
    # False: marked before a request of the claim that found it (so that request was
    # interrupted). True: kept by a retry after a request that may have reached a provider
    # with idempotency keys, so that the retry repeats it exactly.
    carried: bool = False

    @classmethod
    def of_attempt(cls, attempt: Attempt, since: datetime, batch: tuple[str, ...] = ()) -> InFlight:
        """The mark of `attempt`, about to be requested at `since`."""
        return cls(
            attempt.provider,
            attempt.provider_type,
            since,
            attempt.revision,
            attempt.outgoing,
            batch,
        )

    def attempt(self, ready: Ready) -> Attempt:
        """The attempt this request was, for `ready` (the same send)."""
        return Attempt(ready, self.message, self.provider, self.provider_type, self.revision)

    def carry(self) -> InFlight:
        """The mark a retry keeps to repeat this request."""
        return dataclasses.replace(self, carried=True)

    def dump(self) -> dict[str, Any]:
        """The JSON value the store keeps."""
        message = self.message
        return {
            "provider": self.provider,
            "provider_type": self.provider_type,
            "since": self.since.isoformat(),
            "revision": self.revision,
            "batch": list(self.batch),
            "carried": self.carried,
            "message": {
                "send_id": message.send_id,
                "message_id": message.message_id,
                "to": message.to,
                "from": message.from_,
                "reply_to": message.reply_to,
                "subject": message.subject,
                "html": message.html,
                "text": message.text,
                # Pairs, not an object: the store sorts object keys, and a repeated request
                # must list the headers in their first order to be the same bytes.
                "headers": [[name, value] for name, value in message.headers.items()],
                "tags": list(message.tags),
            },
        }

    def encoded(self, batch: str | None = None) -> JsonText:
        """`dump()` as the store encodes it; `batch` is the text of the batch list when the
        caller encoded it already (once for every member of a batch request, whose marks
        would otherwise each encode the whole list again)."""
        rest = self.dump()
        members = rest.pop("batch")
        # "batch" is the first of the sorted keys, and the rest is never empty.
        head = dumps(members) if batch is None else batch
        return JsonText('{"batch":' + head + "," + dumps(rest)[1:])

    @classmethod
    def of(cls, send: PendingSend) -> InFlight | None:
        """The mark of `send`, or None when no request of it may be in flight."""
        data = send.in_flight
        if data is None:
            return None
        body = data["message"]
        message = OutgoingMessage(
            send_id=body["send_id"],
            message_id=body["message_id"],
            to=body["to"],
            from_=body["from"],
            reply_to=body["reply_to"],
            subject=body["subject"],
            html=body["html"],
            text=body["text"],
            headers={name: value for name, value in body["headers"]},
            tags=list(body["tags"]),
        )
        return cls(
            provider=data["provider"],
            provider_type=data["provider_type"],
            since=datetime.fromisoformat(data["since"]),
            revision=data["revision"],
            message=message,
            batch=tuple(data["batch"]),
            carried=bool(data["carried"]),
        )


class Marker:
    """Marks requests in flight under one claim token, durably, before they are written.

    Marks asked for while a commit is running share the next commit, so a wave of
    concurrent requests costs one commit, not one each.
    """

    def __init__(self, store: Store, token: str) -> None:
        self._store = store
        self._token = token
        self._waiting: list[tuple[dict[str, InFlight], asyncio.Future[set[str]]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def mark(self, marks: dict[str, InFlight]) -> set[str]:
        """Mark each send (id -> its request) in flight; the ids marked. A send missing from
        the answer was taken over by another sender (its lease expired): do not send it."""
        future: asyncio.Future[set[str]] = asyncio.get_running_loop().create_future()
        self._waiting.append((marks, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._waiting:
            waiting, self._waiting = self._waiting, []
            try:
                values = _encoded([marks for marks, _ in waiting])
                marked = await self._store.write(_marking(self._token, values))
            except Exception as error:  # each waiting request fails with it
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(error)
                continue
            for marks, future in waiting:
                if not future.done():
                    future.set_result(marked & marks.keys())


def _marking(token: str, values: dict[str, JsonText]) -> Callable[[WriteTx], set[str]]:
    return lambda tx: tx.mark_in_flight(token, values)


def _encoded(waiting: list[dict[str, InFlight]]) -> dict[str, JsonText]:
    """The stored text of every mark, each batch list encoded once for all its members."""
    batches: dict[tuple[str, ...], str] = {}
    values: dict[str, JsonText] = {}
    for marks in waiting:
        for key, mark in marks.items():
            text = batches.get(mark.batch)
            if text is None:
                text = batches[mark.batch] = dumps(list(mark.batch))
            values[key] = mark.encoded(text)
    return values
