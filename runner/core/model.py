"""Pydantic models of one automation file (docs/file-format.md); no I/O.

The models are the single declaration of the file format: the JSON Schema in
schema/ is generated from them. Values are normalised while validating
(durations to seconds, times to `HH:MM`, datetimes to UTC), so two files that
mean the same thing produce equal models.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from runner.core.conditions import Condition
from runner.core.fields import (
    AutomationId,
    Cron,
    DayOffset,
    Duration,
    EventName,
    Instant,
    PositiveDuration,
    StrictModel,
    TimeOfDay,
    TimeZone,
    TimeZoneOrSubscriber,
)

# Validation context key: leave cross-field rules to the caller (see constraint_violations).
COLLECT_VIOLATIONS = "collect_violations"


class Status(StrEnum):
    """The five statuses a file may write (docs/rules.md "Status transitions")."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


# --- triggers ------------------------------------------------------------------

GROUP_EVENTS = frozenset({"group.joined", "group.left"})
NEVER_SENDS_EVENTS = frozenset({"subscriber.unsubscribed", "subscriber.deleted"})
BUILTIN_EVENTS = frozenset(
    {
        "subscriber.added",
        "subscriber.updated",
        "group.joined",
        "group.left",
        "subscriber.unsubscribed",
        "subscriber.resubscribed",
        "subscriber.deleted",
    }
)


class EmailAction(StrEnum):
    """What happened to an email, for `email` triggers (docs/events.md "Email events")."""

    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    OPENED = "opened"
    CLICKED = "clicked"
    NOT_OPENED = "not_opened"
    NOT_CLICKED = "not_clicked"


class EventTrigger(StrictModel):
    """Fires when an event of that name is received."""

    type: Literal["event"]
    event: EventName
    group: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    where: Condition | None = None


class ApiTrigger(StrictModel):
    """Fires on `POST /v1/automations/{id}/trigger`."""

    type: Literal["api"]


class EmailTrigger(StrictModel):
    """Fires on a provider event for an email of another automation."""

    type: Literal["email"]
    action: EmailAction
    automation: AutomationId
    link: Annotated[str, Field(min_length=1)] | None = None
    link_contains: Annotated[str, Field(min_length=1)] | None = None
    within: PositiveDuration | None = None

    def matches_link(self, url: object) -> bool:
        """Whether a clicked URL matches `link` / `link_contains` (any URL when neither)."""
        if self.link is None and self.link_contains is None:
            return True
        if not isinstance(url, str):
            return False
        if self.link is not None:
            return url == self.link
        return self.link_contains is not None and self.link_contains in url


class DateTrigger(StrictModel):
    """Fires every year on the date held in a subscriber field."""

    type: Literal["date"]
    field: Annotated[str, Field(pattern=r"^subscriber\.fields\.[A-Za-z0-9_-]+$")]
    offset: DayOffset = 0
    at: TimeOfDay = "09:00"
    timezone: TimeZoneOrSubscriber | None = None


class ScheduleTrigger(StrictModel):
    """Fires at every tick of a 5-field cron expression."""

    type: Literal["schedule"]
    cron: Cron
    timezone: TimeZone | None = None


Trigger = Annotated[
    EventTrigger | ApiTrigger | EmailTrigger | DateTrigger | ScheduleTrigger,
    Field(discriminator="type"),
]


# --- the rest of an automation -------------------------------------------------


class Day(StrEnum):
    """Days of the week, as a window's opening days."""

    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


DAY_ORDER = list(Day)


def _sorted_days(days: list[Day]) -> list[Day]:
    return sorted(set(days), key=DAY_ORDER.index)


class SendWindow(StrictModel):
    """Only send inside `[start, end)` local time, on windows opening on `days`."""

    days: Annotated[list[Day], Field(min_length=1), AfterValidator(_sorted_days)] = DAY_ORDER
    start: TimeOfDay
    end: TimeOfDay
    timezone: TimeZoneOrSubscriber | None = None


class ExitOn(StrictModel):
    """An event that cancels the pending send when the subscriber does it."""

    event: EventName
    where: Condition | None = None


class Cooldown(StrictModel):
    """`retrigger: {cooldown: 1h}`: enter again, but not within the cooldown."""

    cooldown: PositiveDuration


class Repeat(StrictModel):
    """After the first email, up to `times` more, each `every` apart."""

    every: PositiveDuration
    times: Annotated[int, Field(ge=1, le=1000)]


class Email(StrictModel):
    """The one email of the automation; bodies inline or from template files."""

    from_: Annotated[str, Field(alias="from", min_length=3)]
    reply_to: str | None = None
    subject: Annotated[str, Field(min_length=1, max_length=998)]
    preheader: str | None = None
    html: str | None = None
    html_file: Annotated[str, Field(min_length=1)] | None = None
    text: str | None = None
    text_file: Annotated[str, Field(min_length=1)] | None = None
    tags: list[Annotated[str, Field(min_length=1, max_length=100)]] = []


class Automation(StrictModel):
    """One automation file (docs/file-format.md)."""

    id: AutomationId
    name: str | None = None
    description: str | None = None
    labels: dict[str, str] = {}
    status: Status
    start_at: Instant | None = None
    stop_at: Instant | None = None
    trigger: Trigger
    audience: Condition | None = None
    wait: Duration = 0
    exit_on: list[ExitOn] = []
    send_window: SendWindow | None = None
    retrigger: Annotated[
        Annotated[bool, Tag("bool")] | Annotated[Cooldown, Tag("Cooldown")],
        Discriminator(lambda v: "Cooldown" if isinstance(v, dict | Cooldown) else "bool"),
    ] = False
    repeat: Repeat | None = None
    provider: AutomationId = "default"
    email: Email

    @model_validator(mode="after")
    def _constraints_hold(self, info: ValidationInfo) -> Automation:
        if info.context and info.context.get(COLLECT_VIOLATIONS):
            return self  # the loader reports every violation itself, each at its own line
        violations = constraint_violations(self)
        if violations:
            first = violations[0]
            raise PydanticCustomError(first.rule, first.message, {"at": ".".join(first.at)})
        return self


class Violation(BaseModel):
    """A rule broken across fields of one automation, located by a key path.

    `uses` names every key path the rule read, so that a caller holding a model
    with some values dropped (the loader's salvage) can tell which violations
    might come from a dropped value.
    """

    model_config = ConfigDict(frozen=True)

    rule: str
    at: tuple[str, ...]
    message: str
    uses: tuple[tuple[str, ...], ...] = ()


_TYPE = ("trigger", "type")
_SECTIONS = (("trigger",), ("email",))
_BODIES = (("email", "html"), ("email", "html_file"), ("email", "text"), ("email", "text_file"))


def constraint_violations(automation: Automation) -> list[Violation]:
    """Every cross-field rule of the file format that `automation` breaks (empty when valid)."""
    found: list[Violation] = []

    def add(rule: str, at: tuple[str, ...], message: str, *uses: tuple[str, ...]) -> None:
        # A rule located at a key reads that key too; one located at a whole section
        # (`trigger`, `email`) reads only the keys it names.
        read = uses if at in _SECTIONS else (at, *uses)
        found.append(Violation(rule=rule, at=at, message=message, uses=read))

    a = automation
    if a.status is Status.SCHEDULED and a.start_at is None:
        add(
            "start-at-required",
            ("status",),
            "a scheduled automation needs `start_at`",
            ("start_at",),
        )
    if a.start_at is not None and a.stop_at is not None and a.stop_at <= a.start_at:
        add(
            "stop-at-before-start",
            ("stop_at",),
            "`stop_at` must be later than `start_at`",
            ("start_at",),
        )
    _trigger_violations(a.trigger, add)
    if isinstance(a.trigger, DateTrigger | ScheduleTrigger) and a.retrigger is not False:
        add(
            "retrigger-not-allowed",
            ("retrigger",),
            f"a `{a.trigger.type}` trigger takes no `retrigger`",
            _TYPE,
        )
    if isinstance(a.trigger, ScheduleTrigger) and a.repeat is not None:
        add("repeat-not-allowed", ("repeat",), "a `schedule` trigger takes no `repeat`", _TYPE)
    if a.send_window is not None and a.send_window.start == a.send_window.end:
        add(
            "window-empty",
            ("send_window", "end"),
            "the window's `start` equals its `end`",
            ("send_window", "start"),
        )
    email = a.email
    if email.html is not None and email.html_file is not None:
        add(
            "email-body-conflict",
            ("email", "html_file"),
            "give `html` or `html_file`, not both",
            ("email", "html"),
        )
    if email.text is not None and email.text_file is not None:
        add(
            "email-body-conflict",
            ("email", "text_file"),
            "give `text` or `text_file`, not both",
            ("email", "text"),
        )
    if not any((email.html, email.html_file, email.text, email.text_file)):
        add(
            "email-body-required",
            ("email",),
            "the email needs `html`, `html_file`, `text` or `text_file`",
            *_BODIES,
        )
    return found


def _trigger_violations(trigger: Any, add: Any) -> None:
    """The rules inside one trigger; each reads the trigger's type and the keys it names."""
    if isinstance(trigger, EventTrigger):
        event, group = ("trigger", "event"), ("trigger", "group")
        if trigger.event in NEVER_SENDS_EVENTS:
            add(
                "trigger-never-sends",
                event,
                f"`{trigger.event}` fires only for subscribers who can no longer be emailed",
                _TYPE,
            )
        if trigger.event in GROUP_EVENTS and trigger.group is None:
            add("trigger-group", ("trigger",), f"`{trigger.event}` needs `group`", event, group)
        if trigger.event not in GROUP_EVENTS and trigger.group is not None:
            add(
                "trigger-group",
                group,
                "`group` applies only to group.joined/group.left",
                _TYPE,
                event,
            )
    if isinstance(trigger, EmailTrigger):
        _email_trigger_violations(trigger, add)


def _email_trigger_violations(trigger: EmailTrigger, add: Any) -> None:
    action, within = ("trigger", "action"), ("trigger", "within")
    link, contains = ("trigger", "link"), ("trigger", "link_contains")
    negative = trigger.action in (EmailAction.NOT_OPENED, EmailAction.NOT_CLICKED)
    clicks = trigger.action in (EmailAction.CLICKED, EmailAction.NOT_CLICKED)
    if negative and trigger.within is None:
        add(
            "trigger-within",
            ("trigger",),
            f"`{trigger.action.value}` needs `within`",
            _TYPE,
            action,
            within,
        )
    if not negative and trigger.within is not None:
        add(
            "trigger-within",
            within,
            "`within` applies only to not_opened/not_clicked",
            _TYPE,
            action,
        )
    if trigger.link is not None and trigger.link_contains is not None:
        add("trigger-link", contains, "give `link` or `link_contains`, not both", _TYPE, link)
    elif not clicks and (trigger.link or trigger.link_contains):
        key = link if trigger.link is not None else contains
        add(
            "trigger-link",
            key,
            "link filters apply only to clicked/not_clicked",
            _TYPE,
            action,
        )
