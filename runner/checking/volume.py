"""The `daily-volume` lint: how many emails one subscriber can get in one day (pure).

Every trigger source (an event name, an `api` call, a date, a schedule's ticks) starts a
tree of sends: the automations it enters, their waits, send windows and repeats, and the
automations whose `email` trigger follows those emails, as far as the chain goes. Each entry
of an automation is a group of sends at fixed offsets from its trigger; the trigger itself
may fall anywhere in a range (an open comes whenever the reader opens), and a send window
may hold each send back until it opens. The worst case picks the trigger times and the
window delays that put the most sends into one 24-hour span (docs/rules.md `daily-volume`).

Only automations that send to everyone their trigger names count: one with an `audience`
or a `where` is left out, as in `too-many-emails` (docs/decisions.md).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from runner.core.model import (
    ApiTrigger,
    Automation,
    DateTrigger,
    EmailAction,
    EmailTrigger,
    EventTrigger,
    ScheduleTrigger,
    SendWindow,
)
from runner.core.timing import cron_ticks

DAY = 86_400
WEEK = 7 * DAY
INF = math.inf
MAX_SENDS_PER_ENTRY = 60  # repeats beyond this are far apart or already over any cap
MAX_TICKS = 200  # schedule ticks looked at (a week of them, at most this many)
MAX_GROUPS = 2_000  # entries expanded per source before the count is called a lower bound
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# How late a provider event may follow its email, for the worst case.
_ACTION_DELAY = {
    EmailAction.SENT: 0.0,
    EmailAction.DELIVERED: float(DAY),
    EmailAction.FAILED: float(DAY),
    EmailAction.OPENED: INF,
    EmailAction.CLICKED: INF,
}
_REPEATING_ACTIONS = (EmailAction.OPENED, EmailAction.CLICKED)  # one email, many events


@dataclass(frozen=True)
class Group:
    """One entry of an automation: sends at `offsets` after a trigger in [lo, hi]."""

    path: tuple[str, ...]  # the chain of automation ids that led here, this one last
    lo: float
    hi: float
    offsets: tuple[float, ...]
    slack: float  # how long a send window may hold a send back


@dataclass(frozen=True)
class Volume:
    """The worst day of one trigger source."""

    source: str  # "the `purchase` event", "the schedule of `digest`", ...
    count: float  # INF: no limit
    chains: tuple[tuple[tuple[str, ...], int], ...]  # (chain, emails in the worst day)
    unbounded: str | None = None  # why there is no limit
    truncated: bool = False  # the count is a lower bound


def daily_volumes(
    running: Mapping[str, Automation], now: datetime, default_zone: str
) -> list[Volume]:
    """The worst day of every trigger source among `running` (id -> counted automation)."""
    children: dict[str, list[Automation]] = {}
    for model in running.values():
        if isinstance(model.trigger, EmailTrigger):
            children.setdefault(model.trigger.automation, []).append(model)
    sources: dict[str, list[tuple[Automation, list[tuple[float, float]]]]] = {}
    for ident in sorted(running):
        model = running[ident]
        trigger = model.trigger
        if isinstance(trigger, EventTrigger):
            label = f"the `{trigger.event}` event" + (
                f" (group `{trigger.group}`)" if trigger.group else ""
            )
            sources.setdefault(label, []).append((model, [(0.0, 0.0)]))
        elif isinstance(trigger, ApiTrigger):
            sources[f"an API call to `{ident}`"] = [(model, [(0.0, 0.0)])]
        elif isinstance(trigger, DateTrigger):
            sources[f"the date trigger of `{ident}`"] = [(model, [(0.0, 0.0)])]
        elif isinstance(trigger, ScheduleTrigger):
            zone = ZoneInfo(trigger.timezone or default_zone)
            ticks = cron_ticks(trigger.cron, zone, now, now + timedelta(days=8), MAX_TICKS)
            first = ticks[0] if ticks else now
            times = [((t - first).total_seconds(),) * 2 for t in ticks]
            sources[f"the schedule of `{ident}`"] = [(model, times)]
    return [_volume(label, entries, children) for label, entries in sources.items()]


def _volume(
    label: str,
    entries: Sequence[tuple[Automation, list[tuple[float, float]]]],
    children: Mapping[str, list[Automation]],
) -> Volume:
    expansion = _Expansion(children)
    for model, times in entries:
        for lo, hi in times:
            expansion.enter(model, (), lo, hi)
    expansion.finish()
    if expansion.unbounded is not None:
        return Volume(label, INF, ((expansion.unbounded_chain, 0),), expansion.unbounded)
    count, chains = worst_day(expansion.groups)
    return Volume(label, count, chains, truncated=expansion.truncated)


class _Expansion:
    """The groups of one source, following email triggers down the chain."""

    def __init__(self, children: Mapping[str, list[Automation]]) -> None:
        self.children = children
        self.groups: list[Group] = []
        self.unbounded: str | None = None
        self.unbounded_chain: tuple[str, ...] = ()
        self.truncated = False
        # Automations entered at most once a day: their trigger range over every source email.
        self.once: dict[str, tuple[Automation, tuple[str, ...], float, float]] = {}
        self.once_done: set[str] = set()

    def finish(self) -> None:
        """Enter the once-a-day automations, each at the worst of its possible triggers."""
        while self.once:
            ident = next(iter(self.once))
            model, path, lo, hi = self.once.pop(ident)
            self.once_done.add(ident)
            self.enter(model, path, lo, hi)

    def enter(self, model: Automation, before: tuple[str, ...], lo: float, hi: float) -> None:
        if len(self.groups) >= MAX_GROUPS:
            self.truncated = True
            return
        path = (*before, model.id)
        group = Group(path, lo, hi, _offsets(model), _slack(model.send_window))
        self.groups.append(group)
        for child in self.children.get(model.id, ()):
            if child.id not in path and self.unbounded is None:
                self._follow(group, child)

    def _follow(self, source: Group, child: Automation) -> None:
        trigger = child.trigger
        assert isinstance(trigger, EmailTrigger)
        sends = [(source.lo + o, source.hi + o + source.slack) for o in source.offsets]
        if trigger.action in (EmailAction.NOT_OPENED, EmailAction.NOT_CLICKED):
            within = float(trigger.within or 0)
            starts = [(lo + within, hi + within) for lo, hi in sends]
        else:
            delay = _ACTION_DELAY[trigger.action]
            starts = [(lo, hi + delay) for lo, hi in sends]
        retrigger = child.retrigger
        cooldown = float(retrigger.cooldown) if not isinstance(retrigger, bool) else None
        if retrigger is False or (cooldown is not None and cooldown >= DAY):
            # Entered once (a day at most): whichever of the emails suits the worst case.
            if child.id not in self.once_done:
                lo, hi = min(s[0] for s in starts), max(s[1] for s in starts)
                _, path, was_lo, was_hi = self.once.get(child.id, (child, source.path, lo, hi))
                self.once[child.id] = (child, path, min(lo, was_lo), max(hi, was_hi))
            return
        if trigger.action in _REPEATING_ACTIONS and retrigger is True:
            self.unbounded = (
                f"every {trigger.action.value} event of an email of `{source.path[-1]}` "
                f"enters `{child.id}` again (retrigger: true)"
            )
            self.unbounded_chain = (*source.path, child.id)
            return
        per_send = (
            math.ceil(DAY / cooldown) if cooldown and trigger.action in _REPEATING_ACTIONS else 1
        )
        for lo, hi in starts:
            for _ in range(per_send):
                self.enter(child, source.path, lo, hi)


def _offsets(model: Automation) -> tuple[float, ...]:
    wait = float(model.wait)
    if model.repeat is None:
        return (wait,)
    times = min(model.repeat.times, MAX_SENDS_PER_ENTRY)
    return tuple(wait + k * float(model.repeat.every) for k in range(times + 1))


def _slack(window: SendWindow | None) -> float:
    """The longest a send window can hold a send back (time zones and DST left aside)."""
    if window is None:
        return 0.0
    start = _minutes(window.start) * 60
    length = (_minutes(window.end) * 60 - start) % DAY
    openings = sorted(_DAYS.index(day.value) * DAY + start for day in window.days)
    gaps = [
        (openings[(i + 1) % len(openings)] - opening) % WEEK or WEEK
        for i, opening in enumerate(openings)
    ]
    return float(max(0, max(gaps) - length))


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def worst_day(groups: Sequence[Group]) -> tuple[int, tuple[tuple[tuple[str, ...], int], ...]]:
    """The most sends of `groups` one 24-hour span can hold, and the chains that fill it."""
    candidates: set[float] = {0.0}
    for group in groups:
        for offset in group.offsets:
            candidates.add(group.lo + offset)
            if math.isfinite(group.hi):
                candidates.add(group.hi + offset + group.slack - DAY + 1)
    # Entries whose sends sit at fixed times are counted by bisection; only the others are
    # placed for each candidate span.
    fixed = sorted(g.lo + o for g in groups if g.lo == g.hi and not g.slack for o in g.offsets)
    free = [g for g in groups if g.lo != g.hi or g.slack]
    best, best_at = 0, 0.0
    for start in sorted(candidates):
        total = bisect_left(fixed, start + DAY) - bisect_left(fixed, start)
        total += sum(_best_in(group, start) for group in free)
        if total > best:
            best, best_at = total, start
    per_chain: dict[tuple[str, ...], int] = {}
    for group in groups:
        count = _best_in(group, best_at)
        if count:
            per_chain[group.path] = per_chain.get(group.path, 0) + count
    return best, tuple(per_chain.items())


def _best_in(group: Group, start: float) -> int:
    """The most sends of `group` in [start, start + 1 day), over its trigger times."""
    spans: list[tuple[float, int]] = []
    for offset in group.offsets:
        lo = max(group.lo, start - offset - group.slack)
        hi = min(group.hi, start + DAY - 1 - offset)
        if lo <= hi:
            spans.extend(((lo, 1), (hi, -1)))
    if not spans:
        return 0
    spans.sort(key=lambda item: (item[0], -item[1]))  # opens before closes at one instant
    best = current = 0
    for _, step in spans:
        current += step
        best = max(best, current)
    return best


def describe(volume: Volume, limit: int) -> str:
    """The warning's message: the count, the source and the chains of the worst day."""
    if volume.unbounded is not None:
        return (
            f"one subscriber can get any number of emails in one day from {volume.source}: "
            f"{volume.unbounded} (max_emails_per_day: {limit})"
        )
    chains = "; ".join(_chains(dict(volume.chains)))
    least = "at least " if volume.truncated else ""
    return (
        f"one subscriber can get {least}{int(volume.count)} emails in one day from "
        f"{volume.source}: {chains} (max_emails_per_day: {limit})"
    )


def _chains(counts: dict[tuple[str, ...], int]) -> list[str]:
    """Each longest chain once, an automation sending more than one email marked `(xN)`."""
    longest = [p for p in counts if not any(len(q) > len(p) and q[: len(p)] == p for q in counts)]
    shown = []
    for path in sorted(longest):
        steps = []
        for end in range(1, len(path) + 1):
            count = counts.get(path[:end], 0)
            steps.append(path[end - 1] + (f" (x{count})" if count > 1 else ""))
        shown.append(" → ".join(steps))
    return shown
