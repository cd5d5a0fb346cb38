"""The dashboard's automation pages: the list with filters and sparklines, one automation
with its applied files, history, stats and pending queue, and the queue's actions (the same
operations as the API's, recorded in the history like them)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from runner.engine.catalog import Catalog
from runner.gitops.reload_records import ReloadState, read_state
from runner.gitops.reload_state import reload_summary
from runner.server.api.automations import summary
from runner.server.api.operations import (
    ACTIVE,
    history_payload,
    remove_pending,
    send_now,
    started,
)
from runner.server.ui import charts, highlight
from runner.server.ui.base import UiHandlers, back
from runner.server.ui.session import Session
from runner.store.base import ReadTx
from runner.store.dashboard_stats import DayStats, MessageCounts, RevisionStats

PAGE_SIZE = 50
SPARK_DAYS = 30
NOTICES = {
    "send_now": "The send is due now; the worker sends it shortly.",
    "removed": "The send was removed from the queue.",
}


class AutomationPages(UiHandlers):
    """GET /ui, GET /ui/automations/{id}, POST .../pending/{send_id}/(send-now|remove)."""

    async def index(self, request: Request, session: Session) -> Response:
        """Every automation, filtered by effective status and label, a page at a time."""
        catalog = await self.worker.catalog()
        now = self.now()
        params = request.query_params
        status, label = params.get("status") or "", params.get("label") or ""
        shown = [
            live
            for ident, live in sorted(catalog.by_id.items())
            if (not status or (live.status_at(now) or live.row.status) == status)
            and _has_label(live.model.labels, label)
        ]
        page = _page_number(params.get("page"))
        pages = max((len(shown) + PAGE_SIZE - 1) // PAGE_SIZE, 1)
        page = min(page, pages)
        on_page = shown[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        ids = [live.id for live in on_page]
        days = charts.days_until(now.date(), SPARK_DAYS)
        since = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
            days=SPARK_DAYS - 1
        )

        def read(
            tx: ReadTx,
        ) -> tuple[dict[str, ReloadState | None], dict[str, MessageCounts], Any, dict[str, Any]]:
            states = {ident: read_state(tx, ident) for ident in ids}
            recent = tx.recent_counts(ids, since)
            return states, recent, tx.sends_per_day(ids, since), reload_summary(tx)

        states, stats, per_day, last_reload = await self.store.read(read)
        rows = []
        for live in on_page:
            row = summary(live, states[live.id], now)
            counts = [per_day[live.id].get(day, 0) for day in days]
            row["labels"] = live.model.labels
            row["stats"] = stats[live.id] if started(live) else None
            row["today"] = counts[-1]
            row["spark"] = charts.sparkline(counts, f"Sends per day, last {SPARK_DAYS} days")
            rows.append(row)
        statuses = sorted(
            {live.status_at(now) or live.row.status for live in catalog.by_id.values()}
        )
        return self.page(
            request,
            session,
            "automations.html",
            title="Automations",
            rows=rows,
            total=len(shown),
            page_number=page,
            pages=pages,
            wanted=status,
            label=label,
            statuses=statuses,
            last_reload=last_reload,
            paused=self.worker.providers.paused(),
        )

    async def automation(self, request: Request, session: Session) -> Response:
        """One automation: applied files, history, stats over time and by revision, queue."""
        catalog, live = await self.live(request.path_params["id"])
        ident, now = live.id, self.now()
        days = charts.days_until(now.date(), SPARK_DAYS)
        since = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
            days=SPARK_DAYS - 1
        )

        def read(tx: ReadTx) -> dict[str, Any]:
            stored = tx.automation(ident)
            history = tx.history(ident)
            return {
                "stored": stored,
                "history": history,
                "state": read_state(tx, ident),
                "stats": tx.stats(ident),
                "by_day": tx.stats_by_day(ident, since),
                "by_revision": tx.stats_by_revision(ident),
                "links": tx.top_links(ident),
                "first_day": tx.opened_within(ident, timedelta(hours=24)),
                "pending": tx.pending_sends(ident, ACTIVE, 100),
            }

        found = await self.store.read(read)
        if found["stored"] is not None:
            live = Catalog.build([found["stored"]], found["history"], previous=catalog).by_id[ident]
        by_day: list[DayStats] = found["by_day"]
        by_revision: list[RevisionStats] = found["by_revision"]
        return self.page(
            request,
            session,
            "automation.html",
            title=live.model.name or ident,
            a=summary(live, found["state"], now, live.row),
            row=live.row,
            source=highlight.highlighted(live.row.source, "yaml"),
            templates=[
                (
                    key,
                    getattr(live.model.email, key, None),
                    highlight.highlighted(text, highlight.language_of_template(key)),
                )
                for key, text in sorted(live.row.templates.items())
            ],
            history=[history_payload(e) for e in reversed(found["history"])],
            stats=found["stats"] if started(live) else None,
            chart=_daily_chart(days, by_day),
            by_day=[d for d in reversed(by_day)],
            by_revision=list(reversed(by_revision)),
            links=found["links"],
            first_day=found["first_day"],
            pending=found["pending"],
            notice=NOTICES.get(request.query_params.get("notice") or ""),
        )

    async def send_now(self, request: Request, session: Session) -> Response:
        """The queue's "send now" form: the API's operation, recorded in the history."""
        await self.form(request, session)
        ident, send_id = request.path_params["id"], request.path_params["send_id"]
        await self.live(ident)
        now = self.now()
        await self.store.write(lambda tx: send_now(tx, ident, send_id, now))
        self.worker.wake()
        return back(f"/ui/automations/{ident}", "send_now")

    async def remove(self, request: Request, session: Session) -> Response:
        """The queue's "remove" form: the API's operation, recorded in the history."""
        await self.form(request, session)
        ident, send_id = request.path_params["id"], request.path_params["send_id"]
        await self.live(ident)
        now = self.now()
        await self.store.write(lambda tx: remove_pending(tx, ident, send_id, now))
        return back(f"/ui/automations/{ident}", "removed")


def _has_label(labels: dict[str, str], wanted: str) -> bool:
    """`key` or `key=value` among the labels (no filter when empty)."""
    if not wanted:
        return True
    key, equals, value = wanted.partition("=")
    return key.strip() in labels and (not equals or labels[key.strip()] == value.strip())


def _page_number(text: str | None) -> int:
    return int(text) if text and text.isdigit() and int(text) > 0 else 1


def _daily_chart(days: list[str], by_day: list[DayStats]) -> Any:
    counts = {d.day: d.counts for d in by_day}
    series = [
        ("sent", "b-sent", [counts[d].sent if d in counts else 0 for d in days]),
        ("delivered", "b-delivered", [counts[d].delivered if d in counts else 0 for d in days]),
        ("opened", "b-opened", [counts[d].unique_openers if d in counts else 0 for d in days]),
        ("clicked", "b-clicked", [counts[d].unique_clickers if d in counts else 0 for d in days]),
    ]
    return charts.bars(
        days, series, f"Sends, deliveries, opens and clicks per day, {len(days)} days"
    )
