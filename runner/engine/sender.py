"""The send loop: claim due sends, re-check them, render, hand them to a provider.

Writes run in short transactions (the claim; the checks of every claimed send; the in-flight
marks of requests about to be written; the outcomes of requests answered together);
rendering and provider calls run outside any transaction, through `dispatch`. The claim's
lease token fences every later write, so a sender whose lease expired (another took the
send over) neither sends it nor finishes it: its late result is dropped and logged. A
claimed send still marked in flight was interrupted mid-request (runner.engine.inflight):
it is repeated only under an idempotency key, otherwise recorded `outcome_unknown`. A
failure of one send never stops the loop.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from runner.core.records import PendingSend, SendStatus
from runner.engine.catalog import Catalog
from runner.engine.context import EngineContext, new_id
from runner.engine.dispatch import Job, Round, deliver, putter, unknown_recorder
from runner.engine.inflight import InFlight
from runner.engine.isolated import apply_isolated
from runner.engine.outcomes import Attempt, Ready, Stored, failed, finish, render_failed
from runner.engine.presend import check
from runner.engine.recording import Work, each
from runner.engine.rendering import render_ready, retry_render
from runner.providers import Providers
from runner.providers.base import OutgoingMessage, Provider, ProviderError
from runner.store.base import Store, WriteTx
from runner.templating.render import RenderedEmail, RenderError, RenderUnavailable
from runner.templating.renderpool import RenderPool, shared_pool

log = logging.getLogger(__name__)

CONCURRENCY = 8  # provider requests in flight at once per round


async def send_due(
    store: Store,
    catalog: Catalog,
    ctx: EngineContext,
    providers: Providers,
    now: datetime,
    limit: int = 100,
    *,
    rng: random.Random | None = None,
    concurrency: int = CONCURRENCY,
    renderer: RenderPool | None = None,
    observe: Callable[[float], None] | None = None,
) -> int:
    """Claim up to `limit` due sends and take each to its end; returns how many were claimed.

    Sends interrupted mid-request are settled first. Sends of a provider paused after
    401/403 go back unattempted until it is probed again. The rest are checked and rendered
    (or, repeating a request, taken as it was), then handed to their provider: through
    `send_batch` in chunks when it batches, one by one otherwise, each request after the
    provider's rate limiter allows it, up to `concurrency` requests in flight; the 401/403
    gate and the rate limiters are those `providers` share. `rng` draws the
    retry jitter (tests pass a seeded one). Emails are rendered by `renderer` (default: the
    process's shared pool of render workers), the whole round in one hand-over. `observe`
    is told each stored message's delay from due time to hand-over, in seconds, once stored.
    """
    token = new_id(now)
    run = Round(
        store,
        catalog,
        ctx,
        now,
        token,
        providers,
        rng if rng is not None else random.Random(),
        providers.gate,
        providers.limiters,
        observe,
    )
    # The gate is the event loop's: the transaction only learns which providers are paused.
    paused = frozenset(providers.gate.paused())
    claimed, stored, ready, gated = await store.write(
        lambda tx: _claim_and_check(tx, run, limit, paused)
    )
    run.observed(stored)
    if not claimed:
        return 0
    if gated:  # sends of a paused provider: held, or let through as its probe
        held, free = _hold_paused(run, gated)
        await run.write_each(held)
        if free:
            ready += await store.write(lambda tx: _check_all(tx, run, free, claimed_here=False))
    jobs, records = await _prepare(run, providers, ready, renderer or shared_pool())
    await run.write_each(records)
    await deliver(run, jobs, concurrency)
    return len(claimed)


def _claim_and_check(
    tx: WriteTx, run: Round, limit: int, paused: frozenset[str]
) -> tuple[list[PendingSend], list[Stored], list[Ready], list[PendingSend]]:
    """Claim, settle the interrupted sends and check the rest, in one transaction: one commit
    per round for all of it. The claimed rows are current here (nothing else writes in
    between), so the checks need not read them again. Sends of `paused` providers are left
    to the caller (the last list), which asks the gate whether they wait."""
    lease_until = run.now + timedelta(seconds=run.ctx.lease_seconds)
    claimed = _claim(tx, run.now, limit, lease_until, run.token)
    settled, rest = _settle_interrupted(run, claimed)
    gated = [send for send in rest if _provider_of(run, send) in paused]
    free = [send for send in rest if _provider_of(run, send) not in paused]
    stored = each(tx, settled)
    return claimed, stored, _check_all(tx, run, free), gated


def _provider_of(run: Round, send: PendingSend) -> str | None:
    live = run.catalog.by_id.get(send.automation_id)
    return None if live is None else live.model.provider


def _claim(
    tx: WriteTx, now: datetime, limit: int, lease_until: datetime, token: str
) -> list[PendingSend]:
    """The due sends, and every member of a batch request one of them must repeat: a batch
    goes again whole or not at all."""
    claimed = tx.claim_due(now, limit, lease_until, token)
    members = {m for s in claimed if (mark := InFlight.of(s)) for m in mark.batch}
    missing = members - {s.id for s in claimed}
    if missing:
        claimed += tx.claim_sends(missing, now, lease_until, token)
    return claimed


def _settle_interrupted(
    run: Round, claimed: list[PendingSend]
) -> tuple[list[Work], list[PendingSend]]:
    """Settle the sends whose request was interrupted (crash, expired lease) and those a
    provider without idempotency keys may have accepted; the other sends go on. A send
    halted in flight (stopped meanwhile) is never repeated: it may have gone out."""
    settled: list[Work] = []
    rest: list[PendingSend] = []
    for send in claimed:
        mark = InFlight.of(send)
        provider = run.providers.get(mark.provider) if mark is not None else None
        keyed = provider is not None and provider.idempotent
        if mark is None or (keyed and mark.carried and send.halted is None):
            rest.append(send)  # new, or a retry repeating its request under its key
        elif keyed and send.attempts + 1 < run.ctx.max_attempts and send.halted is None:
            settled.append(_repeat_later(run, send, mark))
        else:
            settled.append(_interrupted(run, send, mark))
    return settled, rest


def _repeat_later(run: Round, send: PendingSend, mark: InFlight) -> Work:
    """Count the interrupted try and repeat its request at once under the same key."""
    why = f"{mark.provider}: interrupted in flight; repeated under the same idempotency key"

    def repeat(tx: WriteTx) -> None:
        carried = mark.carry().dump()
        if not tx.retry_claim(send.id, run.token, run.now, run.now, why, in_flight=carried):
            log.warning("send %s: lease lost before its retry was recorded", send.id)

    return repeat


def _interrupted(run: Round, send: PendingSend, mark: InFlight) -> Work:
    """The provider may have accepted the request and cannot be asked again safely."""
    why = f"{mark.provider}: interrupted in flight; the provider may have accepted it, not resent"

    def record(tx: WriteTx) -> object:
        live = run.catalog.by_id.get(send.automation_id)
        subscriber = tx.subscriber_by_id(send.subscriber_id)
        if live is None or subscriber is None:
            finish(tx, send, run.token, SendStatus.OUTCOME_UNKNOWN, run.now, last_error=why)
            return None
        attempt = mark.attempt(Ready(send, live, subscriber))
        return unknown_recorder(run, attempt, why, mark.since)(tx)

    return record


def _hold_paused(run: Round, claimed: list[PendingSend]) -> tuple[list[Work], list[PendingSend]]:
    """Put back (unattempted) the sends of providers paused after 401/403."""
    held: list[Work] = []
    free: list[PendingSend] = []
    for send in claimed:
        live = run.catalog.by_id.get(send.automation_id)
        until = None if live is None else run.gate.held_until(live.model.provider, run.now)
        if until is None:
            free.append(send)
        else:
            held.append(putter(run, send, until))
    return held, free


def _check_all(
    tx: WriteTx, run: Round, sends: list[PendingSend], *, claimed_here: bool = True
) -> list[Ready]:
    """The checks of `sends`; `claimed_here`: claimed in this transaction, so current."""

    def failed(send: PendingSend, error: Exception) -> None:  # one broken send must not stop
        log.exception("send %s of %s failed unexpectedly", send.id, send.automation_id)

    # One read for the round's subscribers, not one per send.
    subscribers = tx.subscribers_by_ids({send.subscriber_id for send in sends}) if sends else {}

    def one(send: PendingSend) -> Ready | None:
        current = send if claimed_here else tx.pending_send(send.id)
        if current is None:
            return None
        return check(tx, run.catalog, run.ctx, current, run.token, run.now, subscribers)

    return [ready for _, ready in apply_isolated(tx, sends, one, failed) if ready is not None]


async def _prepare(
    run: Round, providers: Mapping[str, Provider], ready: list[Ready], renderer: RenderPool
) -> tuple[list[Job], list[Work]]:
    """Render the ready sends (a retry repeating its request takes it as it was); render
    failures and unknown providers become records."""
    jobs: list[Job] = []
    records: list[Work] = []
    fresh: list[Ready] = []
    for item in ready:
        repeat = InFlight.of(item.send)
        if repeat is not None:
            jobs.append(Job(repeat.attempt(item), repeat))
        else:
            fresh.append(item)
    for item, outcome in await render_ready(fresh, run.ctx, renderer):
        if isinstance(outcome, RenderUnavailable):
            records.append(_render_retrier(run, item, outcome))
        elif isinstance(outcome, RenderError):
            records.append(_render_recorder(run, item, str(outcome)))
        elif (job := _job(run, providers, item, outcome, records)) is not None:
            jobs.append(job)
    return jobs, records


def _job(
    run: Round,
    providers: Mapping[str, Provider],
    item: Ready,
    rendered: RenderedEmail,
    records: list[Work],
) -> Job | None:
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
    provider = providers.get(model.provider)
    kind = provider.type if provider is not None else ""
    attempt = Attempt(item, outgoing, model.provider, kind, item.live.row.revision)
    if provider is None:
        absent = ProviderError(f"provider {model.provider!r} is not configured", retryable=False)
        records.append(_failure_recorder(run, attempt, absent))
        return None
    return Job(attempt)


def _render_recorder(run: Round, ready: Ready, error: str) -> Work:
    return lambda tx: render_failed(tx, run.ctx, ready, run.token, run.now, error)


def _render_retrier(run: Round, ready: Ready, error: RenderUnavailable) -> Work:
    return lambda tx: retry_render(tx, run.ctx, ready, run.token, run.now, error, run.rng)


def _failure_recorder(run: Round, attempt: Attempt, error: ProviderError) -> Work:
    return lambda tx: failed(tx, run.scope, attempt, error)
