"""Writing the outcomes of a sender round's requests: together, and with few statements.

Outcomes handed over while a write of them runs share the next write (one transaction for
the requests answered meanwhile, as in-flight marks do in runner.engine.inflight), and the
sends providers accepted among them are recorded with one statement each for their claims,
messages and events (runner.engine.outcomes.sent_all) instead of several per send.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from runner.engine.isolated import apply_isolated
from runner.engine.outcomes import Attempt, Scope, Stored, sent, sent_all
from runner.providers.base import SendResult
from runner.store.base import Store, WriteTx
from runner.store.errors import TransactionAborted

log = logging.getLogger("runner.engine.sender")

Work = Callable[[WriteTx], object]
Accepted = tuple[Attempt, SendResult]


def each(tx: WriteTx, works: list[Work]) -> list[Stored]:
    """Apply `works`, one that raises undone alone and logged; the messages they stored."""

    def failed(work: Work, error: Exception) -> None:  # one broken send must not stop the others
        log.exception("recording a send failed unexpectedly")

    done = apply_isolated(tx, works, lambda work: work(tx), failed)
    stored: list[Stored] = []
    for _, result in done:
        if isinstance(result, Stored):
            stored.append(result)
        elif isinstance(result, list):  # a work recording several sends at once
            stored += [item for item in result if isinstance(item, Stored)]
    return stored


def accepted_recorder(scope: Scope, accepted: list[Accepted], *, reports_delivery: bool) -> Work:
    """Record messages providers accepted, all at once; should that fail, each alone, so that
    one broken send does not hold back the others."""

    def record(tx: WriteTx) -> list[Stored]:
        try:
            with tx.savepoint():
                return sent_all(tx, scope, accepted, reports_delivery=reports_delivery)
        except TransactionAborted:
            raise
        except Exception:
            pass
        done = apply_isolated(
            tx,
            accepted,
            lambda item: sent(tx, scope, item[0], item[1], reports_delivery=reports_delivery),
            lambda item, error: log.exception("recording a send failed unexpectedly"),
        )
        return [stored for _, stored in done if stored is not None]

    return record


@dataclass
class _Batch:
    accepted: dict[bool, list[Accepted]] = field(default_factory=dict)  # by reports_delivery
    works: list[Work] = field(default_factory=list)

    def works_of(self, scope: Scope) -> list[Work]:
        merged = [
            accepted_recorder(scope, items, reports_delivery=reports)
            for reports, items in self.accepted.items()
        ]
        return merged + self.works


class Recorder:
    """Writes the outcomes of one round's requests; those handed over while a write runs
    share the next one."""

    def __init__(self, store: Store, scope: Scope, observed: Callable[[list[Stored]], None]):
        self._store = store
        self._scope = scope
        self._observed = observed
        self._waiting: list[asyncio.Future[None]] = []
        self._batch = _Batch()
        self._flusher: asyncio.Task[None] | None = None

    async def record(self, accepted: list[Accepted], works: list[Work], reports: bool) -> None:
        """Record the accepted sends of a request and the `works` of its other outcomes;
        returns once they are committed (raises what the write raised)."""
        if not accepted and not works:
            return
        if accepted:
            self._batch.accepted.setdefault(reports, []).extend(accepted)
        self._batch.works += works
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        while self._waiting:
            waiting, self._waiting = self._waiting, []
            batch, self._batch = self._batch, _Batch()
            try:
                stored = await self._store.write(_writing(batch.works_of(self._scope)))
            except Exception as error:  # each waiting request fails with it
                _fail(waiting, error)
                continue
            except BaseException:  # cancelled (shutting down): nobody may wait forever
                for future in waiting + self._waiting:
                    future.cancel()
                raise
            try:
                self._observed(stored)
            except Exception:  # a metric must not leave the requests waiting
                log.exception("observing the stored messages failed")
            for future in waiting:
                if not future.done():
                    future.set_result(None)


def _fail(waiting: list[asyncio.Future[None]], error: Exception) -> None:
    for future in waiting:
        if not future.done():
            future.set_exception(error)


def _writing(works: list[Work]) -> Callable[[WriteTx], list[Stored]]:
    return lambda tx: each(tx, works)
