"""The send loop: claim due sends, re-check them (SPEC 3.3), render, hand them to a provider.

Writes run in short transactions (the claim; the checks of every claimed send; the outcomes
of each provider request); rendering and provider calls run outside any transaction, through
`delivery` (batching, rate limits) and the retry policy of `providers.retry`. The claim's
lease token fences every later write, so a sender whose lease expired (another took the
send over) cannot finish it: its late result is dropped and logged. A failure of one send
never stops the loop (SPEC 7).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from runner.engine.catalog import Catalog
from runner.engine.context import EngineContext, new_id
from runner.engine.delivery import Outcome, Request, call, plan_requests
from runner.engine.outcomes import (
    PROVIDER_ERROR,
    UNKNOWN,
    Ready,
    failed,
    finish,
    next_repeat,
    record_message,
    render_failed,
    sent,
)
from runner.engine.presend import check
from runner.engine.rendering import render_ready, retry_render
from runner.providers import Providers, retry
from runner.providers.base import OutgoingMessage, Provider, ProviderError, SendResult
from runner.providers.gate import ProviderGate
from runner.providers.ratelimit import RateLimiter
from runner.render import RenderedEmail, RenderError, RenderUnavailable
from runner.renderpool import RenderPool, shared_pool
from runner.store.base import Store, TransactionAborted, WriteTx
from runner.store.records import (
    CancelReason,
    PendingSend,
    SendStatus,
    Subscriber,
)

log = logging.getLogger(__name__)

CONCURRENCY = 8  # provider requests in flight at once per round
RETRIES_EXHAUSTED = retry.RETRIES_EXHAUSTED
BACKOFF_BASE = retry.BACKOFF_BASE
SUPPRESSED = CancelReason.SUPPRESSED.value


def backoff_delay(
    attempts: int,
    rng: random.Random,
    retry_after: float | None = None,
    *,
    base: float = retry.BACKOFF_BASE,
    cap: float = retry.BACKOFF_CAP,
) -> float:
    """Seconds before the next try of a send tried `attempts` times before the failed try.

    Full jitter (uniform in [0, min(cap, base * 2**attempts)]), or longer when the
    provider asked for `retry_after` seconds.
    """
    delay = retry.backoff(attempts, rng, base=base, cap=cap)
    return max(delay, retry_after) if retry_after is not None else delay


@dataclass(frozen=True)
class _Job:
    """A rendered send on its way to a provider."""

    ready: Ready
    outgoing: OutgoingMessage


@dataclass
class _Round:
    """What one `send_due` call shares between its steps."""

    store: Store
    catalog: Catalog
    ctx: EngineContext
    now: datetime
    token: str
    rng: random.Random
    gate: ProviderGate
    limiters: Mapping[str, RateLimiter]

    async def write_each(self, works: list[Callable[[WriteTx], object]]) -> None:
        """Apply `works` in one transaction; one that raises is undone and logged alone."""
        if works:
            await self.store.write(lambda tx: _each(tx, works))


def _each(tx: WriteTx, works: list[Callable[[WriteTx], object]]) -> None:
    for work in works:
        try:
            with tx.savepoint():
                work(tx)
        except TransactionAborted:
            raise
        except Exception:  # one broken send must not stop the others
            log.exception("recording a send failed unexpectedly")


async def send_due(
    store: Store,
    catalog: Catalog,
    ctx: EngineContext,
    providers: Mapping[str, Provider],
    now: datetime,
    limit: int = 100,
    *,
    rng: random.Random | None = None,
    concurrency: int = CONCURRENCY,
    gate: ProviderGate | None = None,
    limiters: Mapping[str, RateLimiter] | None = None,
    renderer: RenderPool | None = None,
) -> int:
    """Claim up to `limit` due sends and take each to its end; returns how many were claimed.

    Sends of a provider paused after 401/403 go back unattempted until it is probed again.
    The rest are checked (SPEC 3.3) and rendered, then handed to their provider: through
    `send_batch` in chunks when it batches, one by one otherwise, each request after the
    provider's rate limiter allows it, up to `concurrency` requests in flight. `gate` and
    `limiters` default to those of a `Providers` built by `build_providers`. `rng` draws the
    retry jitter (tests pass a seeded one). Emails are rendered by `renderer` (default: the
    process's shared pool of render workers), the whole round in one hand-over.
    """
    if isinstance(providers, Providers):
        gate = gate if gate is not None else providers.gate
        limiters = limiters if limiters is not None else providers.limiters
    token = new_id(now)
    lease_until = now + timedelta(seconds=ctx.lease_seconds)
    claimed = await store.write(lambda tx: tx.claim_due(now, limit, lease_until, token))
    if not claimed:
        return 0
    run = _Round(
        store,
        catalog,
        ctx,
        now,
        token,
        rng if rng is not None else random.Random(),
        gate if gate is not None else ProviderGate(),
        limiters or {},
    )
    held, free = _hold_paused(run, claimed)
    await run.write_each(held)
    ready = await store.write(lambda tx: _check_all(tx, run, free)) if free else []
    jobs, records = await _prepare(run, providers, ready, renderer or shared_pool())
    await run.write_each(records)
    await _deliver(run, providers, jobs, max(1, concurrency))
    return len(claimed)


def _hold_paused(
    run: _Round, claimed: list[PendingSend]
) -> tuple[list[Callable[[WriteTx], object]], list[PendingSend]]:
    """Put back (unattempted) the sends of providers paused after 401/403."""
    held: list[Callable[[WriteTx], object]] = []
    free: list[PendingSend] = []
    for send in claimed:
        live = run.catalog.by_id.get(send.automation_id)
        until = None if live is None else run.gate.held_until(live.model.provider, run.now)
        if until is None:
            free.append(send)
        else:
            held.append(_putter(run, send, until))
    return held, free


def _putter(run: _Round, send: PendingSend, due: datetime) -> Callable[[WriteTx], object]:
    def put_back(tx: WriteTx) -> None:
        if not tx.reschedule(send.id, due, run.now, token=run.token):
            log.warning("send %s: lease lost before it was put back", send.id)

    return put_back


def _check_all(tx: WriteTx, run: _Round, sends: list[PendingSend]) -> list[Ready]:
    ready: list[Ready] = []
    for send in sends:
        try:
            with tx.savepoint():
                checked = check(tx, run.catalog, run.ctx, send, run.token, run.now)
        except TransactionAborted:
            raise
        except Exception:  # one broken send must not stop the others
            log.exception("send %s of %s failed unexpectedly", send.id, send.automation_id)
            continue
        if checked is not None:
            ready.append(checked)
    return ready


async def _prepare(
    run: _Round, providers: Mapping[str, Provider], ready: list[Ready], renderer: RenderPool
) -> tuple[list[_Job], list[Callable[[WriteTx], object]]]:
    """Render the ready sends; render failures and unknown providers become records."""
    jobs: list[_Job] = []
    records: list[Callable[[WriteTx], object]] = []
    for item, outcome in await render_ready(ready, run.ctx, renderer):
        if isinstance(outcome, RenderUnavailable):
            records.append(_render_retrier(run, item, outcome))
        elif isinstance(outcome, RenderError):
            records.append(_render_recorder(run, item, str(outcome)))
        elif (job := _job(run, providers, item, outcome, records)) is not None:
            jobs.append(job)
    return jobs, records


def _job(
    run: _Round,
    providers: Mapping[str, Provider],
    item: Ready,
    rendered: RenderedEmail,
    records: list[Callable[[WriteTx], object]],
) -> _Job | None:
    """The provider job of a rendered send; None (and a failure record) without its provider."""
    model = item.live.model
    outgoing = OutgoingMessage(
        send_id=item.send.id,
        message_id=item.send.id,  # one message per send (runner.engine.rendering)
        to=item.subscriber.email,
        from_=model.email.from_,
        reply_to=model.email.reply_to,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        headers=dict(rendered.headers),
        tags=list(model.email.tags),
    )
    if model.provider not in providers:
        absent = ProviderError(f"provider {model.provider!r} is not configured", retryable=False)
        records.append(_failure_recorder(run, _Job(item, outgoing), (model.provider, ""), absent))
        return None
    return _Job(item, outgoing)


def _render_recorder(run: _Round, ready: Ready, error: str) -> Callable[[WriteTx], object]:
    return lambda tx: render_failed(tx, run.ctx, ready, run.token, run.now, error)


def _render_retrier(
    run: _Round, ready: Ready, error: RenderUnavailable
) -> Callable[[WriteTx], object]:
    return lambda tx: retry_render(tx, run.ctx, ready, run.token, run.now, error, run.rng)


def _failure_recorder(
    run: _Round, job: _Job, names: tuple[str, str], error: ProviderError
) -> Callable[[WriteTx], object]:
    return lambda tx: failed(
        tx, run.catalog, run.ctx, job.ready, run.token, run.now, job.outgoing, names, error
    )


async def _deliver(
    run: _Round, providers: Mapping[str, Provider], jobs: list[_Job], concurrency: int
) -> None:
    by_provider: dict[str, list[_Job]] = {}
    for job in jobs:
        by_provider.setdefault(job.ready.live.model.provider, []).append(job)
    requests: list[Request[_Job]] = []
    for name, group in by_provider.items():
        requests += plan_requests(providers[name], group, [job.outgoing for job in group])
    slots = asyncio.Semaphore(concurrency)

    async def one(request: Request[_Job]) -> None:
        async with slots:
            try:
                await _request(run, request)
            except Exception:  # an adapter bug: these sends resume after their lease
                sends = ", ".join(job.ready.send.id for job in request.jobs)
                log.exception(
                    "provider %s failed unexpectedly (sends %s)", request.provider.name, sends
                )

    await asyncio.gather(*(one(request) for request in requests))


async def _request(run: _Round, request: Request[_Job]) -> None:
    provider = request.provider
    # Waiting longer than half the lease would let another sender take these sends over.
    max_wait = run.ctx.lease_seconds / 2
    paused_until = run.gate.paused().get(provider.name)
    if paused_until is not None and run.now < paused_until:
        # Another request of this round was just refused 401/403: do not burn this one.
        await run.write_each([_putter(run, job.ready.send, paused_until) for job in request.jobs])
        return
    outcomes = await call(request, run.limiters.get(provider.name), max_wait)
    if outcomes is None:
        later = run.now + timedelta(seconds=max_wait)
        await run.write_each([_putter(run, job.ready.send, later) for job in request.jobs])
        return
    auth = [o for o in outcomes if isinstance(o, ProviderError) and o.auth]
    if auth:
        until = run.gate.pause_provider(provider.name, run.now)
        log.error(
            "provider %s refused our credentials (%s); paused until %s",
            provider.name,
            auth[0].message,
            until.isoformat(),
        )
    elif run.gate.probing(provider.name):
        run.gate.resume(provider.name)
        log.warning("provider %s accepts our credentials again; resumed", provider.name)
    works = [
        _outcome_recorder(run, provider, job, outcome)
        for job, outcome in zip(request.jobs, outcomes, strict=True)
    ]
    await run.write_each(works)


def _outcome_recorder(
    run: _Round, provider: Provider, job: _Job, outcome: Outcome
) -> Callable[[WriteTx], object]:
    def record(tx: WriteTx) -> None:
        if isinstance(outcome, SendResult):
            sent(
                tx,
                run.catalog,
                run.ctx,
                job.ready,
                run.token,
                run.now,
                job.outgoing,
                provider,
                outcome,
            )
        else:
            _provider_failed(tx, run, job, provider, outcome)

    return record


# --- rendering and the retry policy ---------------------------------------------------


def _provider_failed(
    tx: WriteTx, run: _Round, job: _Job, provider: Provider, error: ProviderError
) -> None:
    """Apply the retry policy's decision (SPEC 7) to one failed message."""
    ready, outgoing, now, token = job.ready, job.outgoing, run.now, run.token
    send = ready.send
    decision = retry.decide(error, send.attempts, run.rng, max_attempts=run.ctx.max_attempts)
    names = (provider.name, provider.type)
    if decision.action == "unknown":
        # It may have gone out: never resent. The message is kept so that provider events
        # naming it reconcile the send (SPEC 7).
        if finish(tx, send, token, SendStatus.OUTCOME_UNKNOWN, now, last_error=error.message):
            record_message(tx, run.catalog, ready, now, outgoing, *names, None, status=UNKNOWN)
            next_repeat(tx, ready.live, run.ctx, send, ready.subscriber, now)
        return
    if decision.action == "pause_provider":
        # Not the send's fault: back unattempted, due when the provider is probed again.
        until = run.gate.paused().get(provider.name, now + timedelta(seconds=decision.delay or 0))
        _putter(run, send, until)(tx)
        return
    if decision.action == "retry":
        due = now + timedelta(seconds=decision.delay or 0.0)
        if not tx.retry_claim(send.id, token, due, now, error.message):
            log.warning("send %s: lease lost before its retry was recorded", send.id)
        return
    if decision.action == "suppress":
        _suppress(tx, ready.subscriber, decision.reason or "bounced", now)
        reason = SUPPRESSED
    else:
        reason = decision.reason or PROVIDER_ERROR
    if reason == RETRIES_EXHAUSTED:
        attempts = send.attempts + 1
        error = ProviderError(
            f"retries exhausted after {attempts} attempts: {error.message}", retryable=False
        )
    failed(tx, run.catalog, run.ctx, ready, token, now, outgoing, names, error, reason=reason)


def _suppress(tx: WriteTx, subscriber: Subscriber, reason: str, now: datetime) -> None:
    """The provider refuses this recipient for good: suppress them (the first reason stays)."""
    current = tx.subscriber_by_id(subscriber.id) if subscriber.id is not None else None
    if current is None or current.deleted_at is not None or current.suppressed:
        return
    current.suppressed = reason
    current.suppressed_at = now
    tx.save_subscriber(current)
