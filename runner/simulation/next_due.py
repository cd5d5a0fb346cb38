"""When the engine next has something to do: the instant the simulation moves its clock to.

Read from the store and the catalog only; the engine itself decides what to do then. Missing
a kind of work here would only make it happen late (at the next step), never differently.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from runner.core import timing
from runner.core.model import DateTrigger, EmailAction, EmailTrigger, ScheduleTrigger, Status
from runner.core.records import SendStatus
from runner.engine.catalog import DELETED, Catalog, Live
from runner.store.base import ReadTx

_PAGE = 1000
_NEGATIVE = (EmailAction.NOT_OPENED, EmailAction.NOT_CLICKED)


def next_due(
    tx: ReadTx, catalog: Catalog, default_zone: str, after: datetime, until: datetime
) -> datetime | None:
    """The earliest instant in (after, until] at which some work falls due, or None."""
    found: list[datetime] = []
    for live in catalog.by_id.values():
        if live.row.status == DELETED:
            continue
        found.extend(_lifecycle(live, after))
        for send in tx.pending_sends(live.id, [SendStatus.PENDING], limit=1):
            found.append(send.due_at)
        trigger = live.model.trigger
        if isinstance(trigger, ScheduleTrigger):
            zone = ZoneInfo(trigger.timezone or default_zone)
            found.extend(timing.cron_ticks(trigger.cron, zone, after, until, limit=1))
        elif isinstance(trigger, DateTrigger):
            found.extend(_date_firings(tx, trigger, default_zone, after, until))
        elif isinstance(trigger, EmailTrigger) and trigger.action in _NEGATIVE:
            assert trigger.within is not None
            within = timedelta(seconds=trigger.within)
            sent = tx.messages_sent_between(trigger.automation, after - within, until - within)
            found.extend(message.sent_at + within for message in sent)
    later = [instant for instant in found if after < instant <= until]
    return min(later) if later else None


def _lifecycle(live: Live, after: datetime) -> list[datetime]:
    """A scheduled start and a `stop_at` still to come."""
    model = live.model
    moments = []
    if live.status == Status.SCHEDULED.value and model.start_at is not None:
        moments.append(model.start_at)
    if live.status != Status.STOPPED.value and model.stop_at is not None:
        moments.append(model.stop_at)
    return [moment for moment in moments if moment > after]


def _date_firings(
    tx: ReadTx, trigger: DateTrigger, default_zone: str, after: datetime, until: datetime
) -> list[datetime]:
    """The next firing of each known subscriber's date."""
    key = trigger.field.removeprefix("subscriber.fields.")
    found: list[datetime] = []
    last_id = 0
    while True:
        page = tx.subscribers(last_id, _PAGE)
        for person in page:
            zone = timing.zone_for(trigger.timezone, person.fields, default_zone)
            firings = timing.date_firings_between(
                person.fields.get(key), trigger.offset, trigger.at, zone, after, until
            )
            found.extend(firings[:1])
        if len(page) < _PAGE:
            return found
        last_id = page[-1].id or 0
