"""Provider requests of one sender round: planned, marked in flight, made, and judged.

Each request waits for its provider's rate limiter, then its sends are marked in flight
durably (runner.engine.inflight), then it is written; its outcomes are judged by the retry
policy (runner.providers.retry) and recorded in one short transaction, shared with the
requests answered meanwhile (runner.engine.recording). A send whose lease was taken over
before its mark is not sent at all.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from runner.core.records import CancelReason, PendingSend, SendStatus
from runner.engine import suppression
from runner.engine.catalog import Catalog
from runner.engine.context import EngineContext
from runner.engine.delivery import Outcome, Request, call, plan_requests
from runner.engine.inflight import InFlight, Marker
from runner.engine.outcomes import (
    PROVIDER_ERROR,
    Attempt,
    Scope,
    Stored,
    failed,
    finish,
    sent,
    unknown,
)
from runner.engine.recording import Recorder, Work, each
from runner.providers import retry
from runner.providers.base import Provider, ProviderError, SendResult
from runner.providers.gate import ProviderGate
from runner.providers.ratelimit import RateLimiter
from runner.store.base import Store, WriteTx
from runner.store.errors import StoreUnavailable

log = logging.getLogger("runner.engine.sender")

SUPPRESSED = CancelReason.SUPPRESSED.value


@dataclass(frozen=True)
class Job:
    """A send on its way to a provider."""

    attempt: Attempt
    repeat: InFlight | None = None  # the request this job repeats exactly (None: new)

    @property
    def send(self) -> PendingSend:
        """The claimed send."""
        return self.attempt.ready.send


@dataclass
class Round:
    """What one `send_due` call shares between its steps."""

    store: Store
    catalog: Catalog
    ctx: EngineContext
    now: datetime
    token: str
    providers: Mapping[str, Provider]
    rng: random.Random
    gate: ProviderGate
    limiters: Mapping[str, RateLimiter]
    # Told each stored message's due-to-hand-over delay once its transaction committed.
    observe: Callable[[float], None] | None = None

    def __post_init__(self) -> None:
        self.scope = Scope(self.catalog, self.ctx, self.token, self.now)
        self.marker = Marker(self.store, self.token)
        self.recorder = Recorder(self.store, self.scope, self.observed)

    async def write_each(self, works: list[Work]) -> None:
        """Apply `works` in one transaction; one that raises is undone and logged alone."""
        if works:
            self.observed(await self.store.write(lambda tx: each(tx, works)))

    def observed(self, stored: list[Stored]) -> None:
        """Tell `observe` the delays of messages stored by a committed transaction."""
        if self.observe is not None:
            for item in stored:
                self.observe(item.delay)


def putter(run: Round, send: PendingSend, due: datetime) -> Work:
    """Return a claimed send to PENDING at `due` without counting an attempt, its in-flight
    mark as the claim found it (a request of this round that got no chance, or was refused
    401/403, is not in flight)."""

    def put_back(tx: WriteTx) -> None:
        tx.mark_in_flight(run.token, {send.id: send.in_flight})
        if not tx.reschedule(send.id, due, run.now, token=run.token):
            log.warning("send %s: lease lost before it was put back", send.id)

    return put_back


def unknown_recorder(run: Round, attempt: Attempt, why: str, sent_at: datetime) -> Work:
    """Record `attempt` as `outcome_unknown`: it may have gone out at `sent_at`."""
    return lambda tx: unknown(tx, run.scope, attempt, why, sent_at=sent_at)


async def deliver(run: Round, jobs: list[Job], concurrency: int) -> None:
    """Make every request of `jobs`, up to `concurrency` at once, and record the outcomes."""
    requests, unrepeatable = _plan(run, jobs)
    await run.write_each(unrepeatable)
    slots = asyncio.Semaphore(max(1, concurrency))

    async def one(request: Request[Job]) -> None:
        async with slots:
            try:
                await _request(run, request)
            except Exception:  # an adapter bug: these sends resume after their lease
                sends = ", ".join(job.send.id for job in request.jobs)
                log.exception(
                    "provider %s failed unexpectedly (sends %s)", request.provider.name, sends
                )

    await asyncio.gather(*(one(request) for request in requests))


def _plan(run: Round, jobs: list[Job]) -> tuple[list[Request[Job]], list[Work]]:
    """New jobs in the provider's batches; a repeated request exactly as it was, a batch
    with its members in their order (its idempotency key names them), or `outcome_unknown`
    when a member can no longer go (cancelled since)."""
    requests: list[Request[Job]] = []
    unrepeatable: list[Work] = []
    by_provider: dict[str, list[Job]] = {}
    for job in jobs:
        by_provider.setdefault(job.attempt.provider, []).append(job)
    for name, group in by_provider.items():
        provider = run.providers[name]
        new = [job for job in group if job.repeat is None]
        requests += plan_requests(provider, new, [job.attempt.outgoing for job in new])
        batches: dict[tuple[str, ...], dict[str, Job]] = {}
        for job in group:
            if job.repeat is not None and not job.repeat.batch:
                requests.append(Request(provider, [job], [job.attempt.outgoing]))
            elif job.repeat is not None:
                batches.setdefault(job.repeat.batch, {})[job.send.id] = job
        for batch, members in batches.items():
            if set(members) == set(batch):
                ordered = [members[send_id] for send_id in batch]
                requests.append(Request(provider, ordered, [j.attempt.outgoing for j in ordered]))
                continue
            why = f"{name}: its batch request cannot be repeated whole; not resent"
            unrepeatable += [
                unknown_recorder(run, job.attempt, why, job.repeat.since)
                for job in members.values()
                if job.repeat is not None
            ]
    return requests, unrepeatable


async def _request(run: Round, request: Request[Job]) -> None:
    provider = request.provider
    # Waiting longer than half the lease would let another sender take these sends over.
    max_wait = run.ctx.lease_seconds / 2
    paused_until = run.gate.paused().get(provider.name)
    if paused_until is not None and run.now < paused_until:
        # Another request of this round was just refused 401/403: do not burn this one.
        await run.write_each([putter(run, job.send, paused_until) for job in request.jobs])
        return
    limiter = run.limiters.get(provider.name)
    if limiter is not None and not await limiter.acquire(max_wait):
        later = run.now + timedelta(seconds=max_wait)
        await run.write_each([putter(run, job.send, later) for job in request.jobs])
        return
    batch = tuple(job.send.id for job in request.jobs) if len(request.jobs) > 1 else ()
    marks = {
        job.send.id: job.repeat or InFlight.of_attempt(job.attempt, run.now, batch)
        for job in request.jobs
    }
    marked = await run.marker.mark(marks)
    if len(marked) < len(marks):
        # Taken over by another sender: sending now could send twice. The rest of a batch
        # goes back too, as the request marked with all its members.
        lost = sorted(marks.keys() - marked)
        log.warning("sends %s: lease lost before the request; not sent", ", ".join(lost))
        await run.write_each([putter(run, job.send, run.now) for job in request.jobs])
        return
    outcomes = await call(request)
    _watch_credentials(run, provider, outcomes)
    decisions = _decisions(run, request, outcomes)
    await _suppress_refused(run, provider, request.jobs, decisions)
    accepted = [
        (job.attempt, outcome)
        for job, outcome in zip(request.jobs, outcomes, strict=True)
        if isinstance(outcome, SendResult)
    ]
    works = [
        _recorder(run, provider, job, marks[job.send.id], outcome, decision)
        for job, outcome, decision in zip(request.jobs, outcomes, decisions, strict=True)
        if not isinstance(outcome, SendResult)
    ]
    await run.recorder.record(accepted, works, provider.reports_delivery)


def _watch_credentials(run: Round, provider: Provider, outcomes: list[Outcome]) -> None:
    """Pause the provider after 401/403; resume it when a probe gets through."""
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


def _decisions(
    run: Round, request: Request[Job], outcomes: list[Outcome]
) -> list[retry.Decision | None]:
    """The retry policy's decision for each failed message. A whole-request failure is one
    failure: its members share one decision (one due time), judged by the most tried, so a
    batch is repeated together."""
    shared: dict[int, retry.Decision] = {}
    decisions: list[retry.Decision | None] = []
    for outcome in outcomes:
        if isinstance(outcome, SendResult):
            decisions.append(None)
            continue
        if id(outcome) not in shared:
            tries = max(
                job.send.attempts
                for job, other in zip(request.jobs, outcomes, strict=True)
                if other is outcome
            )
            shared[id(outcome)] = retry.decide(
                outcome, tries, run.rng, max_attempts=run.ctx.max_attempts
            )
        decisions.append(shared[id(outcome)])
    return decisions


def _recorder(
    run: Round,
    provider: Provider,
    job: Job,
    mark: InFlight,
    outcome: Outcome,
    decision: retry.Decision | None,
) -> Work:
    def record(tx: WriteTx) -> Stored | None:
        if isinstance(outcome, SendResult):
            reports = provider.reports_delivery
            return sent(tx, run.scope, job.attempt, outcome, reports_delivery=reports)
        assert decision is not None
        return _provider_failed(tx, run, provider, job, mark, outcome, decision)

    return record


def _provider_failed(
    tx: WriteTx,
    run: Round,
    provider: Provider,
    job: Job,
    mark: InFlight,
    error: ProviderError,
    decision: retry.Decision,
) -> Stored | None:
    """Apply the retry policy's decision to one failed message; the message stored, if any."""
    attempt, now, send = job.attempt, run.now, job.send
    if decision.action in ("retry", "pause_provider"):
        current = tx.pending_send(send.id)
        if current is not None and current.halted is not None:
            return _halted(tx, run, attempt, error, current.halted)
    if decision.action == "unknown":
        return unknown(tx, run.scope, attempt, error.message)
    if decision.action == "pause_provider":
        # Not the send's fault: back unattempted, due when the provider is probed again.
        until = run.gate.paused().get(provider.name, now + timedelta(seconds=decision.delay or 0))
        putter(run, send, until)(tx)
        return None
    if decision.action == "retry":
        due = now + timedelta(seconds=decision.delay or 0.0)
        # With an idempotency key every retry repeats this very request: an earlier try may
        # have reached the provider, and only the same body under the same key is harmless.
        keep = mark.carry().dump() if provider.idempotent else None
        if not tx.retry_claim(send.id, run.token, due, now, error.message, in_flight=keep):
            log.warning("send %s: lease lost before its retry was recorded", send.id)
        return None
    if decision.action == "suppress":  # the recipient was suppressed first (_suppress_refused)
        reason = SUPPRESSED
    else:
        reason = decision.reason or PROVIDER_ERROR
    if reason == retry.RETRIES_EXHAUSTED:
        error = ProviderError(
            f"retries exhausted after {send.attempts + 1} attempts: {error.message}",
            retryable=False,
        )
    return failed(tx, run.scope, attempt, error, reason=reason)


def _halted(
    tx: WriteTx, run: Round, attempt: Attempt, error: ProviderError, reason: CancelReason
) -> Stored | None:
    """A send stopped while its request was in flight is not tried again: `outcome_unknown`
    when the request may have reached the provider (its events reconcile it), else
    cancelled for the reason it was halted."""
    if error.outcome_unknown:
        return unknown(tx, run.scope, attempt, error.message)
    send = attempt.ready.send
    finish(
        tx,
        send,
        run.token,
        SendStatus.CANCELLED,
        run.now,
        reason=reason.value,
        last_error=error.message,
    )
    return None


async def _suppress_refused(
    run: Round, provider: Provider, jobs: list[Job], decisions: list[retry.Decision | None]
) -> None:
    """Suppress the recipients the provider refused for good, in a transaction of their own:
    suppressing waits for the engine lock (runner.engine.suppression), which must not be
    waited for while the outcomes' rows are held."""
    refused = [
        (job, decision.reason or "bounced")
        for job, decision in zip(jobs, decisions, strict=True)
        if decision is not None and decision.action == "suppress"
    ]
    if not refused:
        return

    def work(tx: WriteTx) -> None:
        for job, reason in refused:
            person = job.attempt.ready.subscriber.id
            if person is not None:
                source = suppression.from_refused_send(provider.name, job.send.id)
                suppression.suppress(tx, person, reason, run.now, source)

    try:
        await run.store.write(work)
    except StoreUnavailable as error:  # the provider refuses them again next time
        log.warning(
            "provider %s refused %d recipients; suppressing them failed: %s",
            provider.name,
            len(refused),
            error,
        )
