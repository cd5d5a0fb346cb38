"""Running one scenario on the real engine: the worker `serve` builds, the files applied as
`serve` applies them, a throwaway SQLite store and a fake clock moved from one due instant
to the next (docs/simulate.md "How it runs")."""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Awaitable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from runner.checking.tree import Tree, TreeChecker
from runner.core.clock import FakeClock
from runner.core.config import OutboxProvider, Provider
from runner.core.records import IncomingEvent, MessageEvent, SendStatus
from runner.core.settings import Settings
from runner.engine import entering, feedback
from runner.engine.apply import ApplyReport
from runner.engine.startup import build_worker
from runner.engine.worker import Worker
from runner.errors import PostwrightError
from runner.providers import build_providers
from runner.simulation.edits import EditedSnapshot
from runner.simulation.next_due import next_due
from runner.simulation.scenario import Scenario, Step
from runner.simulation.timeline import Cancelled, Failed, Note, Sent, Timeline
from runner.store import open_store
from runner.store.base import ReadTx, Store, WriteTx

MAX_STEPS = 20_000  # clock moves per scenario: a cron every minute for two weeks
UPSERT_EVENT = "subscriber.updated"  # how the subscribers API upserts (docs/subscribers.md)
# A fixed key: unsubscribe links, and so the rendered emails, are the same on every run.
SIMULATION_KEY = b"postwright-simulate-unsubscribe-key"
_STATUS_LINE = re.compile(r"(?m)^status:[ \t]*[A-Za-z]+")


class Applier(Protocol):
    """Applies a checked tree to the store as a whole state (what `serve` does at start-up)."""

    def __call__(
        self, store: Store, tree: Tree, now: datetime, commit: str | None
    ) -> Awaitable[ApplyReport]: ...


class SimulationTooLong(PostwrightError):
    """The scenario needs more clock steps than MAX_STEPS."""


def simulation_settings(root: Path, tree: Tree, folder: str) -> Settings:
    """The runner's settings for a simulation: the repository's time zone and URL, every
    provider replaced by an outbox of the same name, a store in `folder`."""
    config = tree.config
    providers: dict[str, Provider] = {
        name: OutboxProvider(type="outbox") for name in config.providers
    }
    config = config.model_copy(update={"providers": providers})
    return Settings(
        repo=root,
        database_url=f"sqlite:///{folder}/simulation.db",
        timezone=config.timezone,
        public_url=config.public_url,
        unsubscribe_key=SIMULATION_KEY,
        event_id_retention=config.event_id_retention,
        config=config,
        providers=providers,
    )


async def simulate(root: Path, tree: Tree, scenario: Scenario, apply: Applier) -> Timeline:
    """Run `scenario` over the automations of `tree` and return what happened."""
    with tempfile.TemporaryDirectory(prefix="postwright-simulate-") as folder:
        clock = FakeClock(scenario.start)
        settings = simulation_settings(root, tree, folder)
        store = open_store(settings.database_url, clock)
        try:
            worker = await build_worker(
                store,
                clock,
                build_providers(settings),
                timezone=settings.timezone,
                public_url=settings.public_url,
                configured_key=SIMULATION_KEY,
            )
            try:
                run = _Run(scenario, tree, apply, store, worker, clock)
                await run.run()
                return await store.read(lambda tx: run.collect(tx))
            finally:
                await worker.providers.aclose()
        finally:
            await store.close()


class _Run:
    def __init__(
        self,
        scenario: Scenario,
        tree: Tree,
        apply: Applier,
        store: Store,
        worker: Worker,
        clock: FakeClock,
    ) -> None:
        self.scenario, self.tree, self.apply = scenario, tree, apply
        self.store, self.worker, self.clock = store, worker, clock
        self.checker = TreeChecker()
        self.edits: dict[str, bytes] = {}
        self.notes: list[Note] = []

    async def run(self) -> None:
        """Subscribers first (known before any automation runs), then the files, then time."""
        start, end = self.scenario.start, self.scenario.end
        people = [
            _incoming(f"sim-subscriber-{i}", UPSERT_EVENT, p.email, p.fields, p.groups, {})
            for i, p in enumerate(self.scenario.subscribers)
        ]
        if people:
            await self.store.ingest(people)
            await self.worker.drain()
        await self.apply(self.store, self.tree, start, None)
        await self.worker.drain()
        steps = list(self.scenario.steps)
        for _ in range(MAX_STEPS):
            now = self.clock.now()
            while steps and steps[0].at <= now:
                await self._take(steps.pop(0), now)
                await self.worker.drain()
            due = await self._next_due(now, end)
            if steps and (due is None or steps[0].at < due):
                due = steps[0].at
            if due is None or due > end:
                return
            self.clock.set(due)
            await self.worker.drain()
        raise SimulationTooLong(
            f"{self.scenario.path}: more than {MAX_STEPS} clock steps; shorten `until`"
        )

    async def _next_due(self, now: datetime, end: datetime) -> datetime | None:
        catalog = await self.worker.catalog()
        zone = self.worker.ctx.default_timezone
        return await self.store.read(lambda tx: next_due(tx, catalog, zone, now, end))

    async def _take(self, step: Step, now: datetime) -> None:
        values = step.values
        if step.kind == "event":
            event = _incoming(
                f"sim-event-{step.index}",
                values["event"],
                values["email"],
                values.get("fields"),
                values.get("groups"),
                values.get("data") or {},
                values.get("occurred_at"),
            )
            await self.store.ingest([event])
        elif step.kind == "trigger":
            await self._trigger(step, now)
        elif step.kind == "email_event":
            await self._email_event(step, now)
        else:
            await self._status(step, now)

    async def _trigger(self, step: Step, now: datetime) -> None:
        values = step.values
        email = values["email"]
        if "fields" in values or "groups" in values:
            upsert = _incoming(
                f"sim-trigger-{step.index}",
                UPSERT_EVENT,
                email,
                values.get("fields"),
                values.get("groups"),
                {},
            )
            await self.store.ingest([upsert])
            await self.worker.drain()
        catalog = await self.worker.catalog()
        ctx, ident, data = self.worker.ctx, values["trigger"], values.get("data") or {}
        result = await self.store.write(
            lambda tx: entering.api_trigger(tx, catalog, ctx, ident, email, data, now)
        )
        if not result.accepted:
            message = f"the api trigger of {ident} for {email} was not accepted: {result.reason}"
            self.notes.append(Note(now, step.line, message, failure=False))

    async def _email_event(self, step: Step, now: datetime) -> None:
        values = step.values
        to, ident, kind = values["to"].strip().lower(), values["automation"], values["email_event"]

        def latest(tx: ReadTx) -> Any:
            sent = [m for m in tx.messages(1_000_000, ident) if m.to == to and m.sent_at <= now]
            return max(sent, key=lambda m: (m.sent_at, m.id)) if sent else None

        message = await self.store.read(latest)
        if message is None:
            text = f"`{kind}` names an email of {ident} to {to}, but none was sent by then"
            self.notes.append(Note(now, step.line, text, failure=True))
            return
        event = MessageEvent(
            provider=message.provider,
            provider_event_id=f"sim-email-event-{step.index}",
            message_id=message.id,
            type=kind,
            occurred_at=now,
            received_at=now,
            url=values.get("url"),
            bounce=values.get("bounce") or ("hard" if kind == "bounced" else None),
        )
        catalog = await self.worker.catalog()

        def record(tx: WriteTx) -> str:
            feedback.lock_for(tx, [event])
            return feedback.record_provider_event(tx, catalog, message.provider, event)

        await self.store.write(record)

    async def _status(self, step: Step, now: datetime) -> None:
        ident, status = step.values["automation"], step.values["status"]
        version = self.tree.versions.get(ident)
        source = self.tree.read(version.path) if version is not None else None
        if version is None or source is None:
            return self._failed(step, now, f"no valid automation {ident} to set {status}")
        text = source.decode("utf-8")
        if not _STATUS_LINE.search(text):
            return self._failed(step, now, f"{version.path} has no top-level `status:` line")
        self.edits[version.path] = _STATUS_LINE.sub(f"status: {status}", text, count=1).encode()
        tree = self.checker.check(EditedSnapshot(self.tree.snapshot, self.edits), now)
        report = await self.apply(self.store, tree, now, None)
        refused = [change for change in report.refused if change.id == ident]
        if refused:
            why = "; ".join(f"{f.rule}: {f.message}" for f in refused[0].findings) or "refused"
            return self._failed(step, now, f"the runner refused {ident} → {status}: {why}")
        self.tree = tree

    def _failed(self, step: Step, now: datetime, message: str) -> None:
        self.notes.append(Note(now, step.line, message, failure=True))

    def collect(self, tx: ReadTx) -> Timeline:
        """Every send and cancellation in the store, in time order."""
        timeline = Timeline(notes=self.notes)
        for row in tx.automations():
            for message in tx.messages(1_000_000, row.id):
                timeline.sends.append(Sent(message.sent_at, message.to, row.id, message.subject))
            for send in tx.pending_sends(row.id, [SendStatus.CANCELLED], limit=1_000_000):
                at = send.updated_at or send.due_at
                reason = send.reason or "cancelled"
                timeline.cancellations.append(Cancelled(at, send.email, row.id, reason))
            for send in tx.pending_sends(row.id, [SendStatus.FAILED], limit=1_000_000):
                at, why = send.updated_at or send.due_at, send.reason or "failed"
                failed = Failed(at, send.email, row.id, why, send.last_error or "")
                timeline.failures.append(failed)
        timeline.sends.sort(key=lambda s: (s.at, s.to, s.automation, s.subject))
        timeline.cancellations.sort(key=lambda c: (c.at, c.to, c.automation, c.reason))
        timeline.failures.sort(key=lambda f: (f.at, f.to, f.automation, f.reason))
        return timeline


def _incoming(
    ident: str,
    kind: str,
    email: str,
    fields: dict[str, Any] | None,
    groups: list[str] | None,
    data: dict[str, Any],
    occurred_at: str | None = None,
) -> IncomingEvent:
    body = {"type": kind, "email": email, "fields": fields, "groups": groups, "data": data}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    return IncomingEvent(
        id=ident,
        type=kind,
        email=email.strip().lower(),
        fields=fields,
        groups=groups,
        data=data,
        occurred_at=datetime.fromisoformat(occurred_at) if occurred_at else None,
        body_hash=digest,
    )
