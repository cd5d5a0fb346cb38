"""What happened during one scenario: sends, cancellations, failures and notes on steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Sent:
    """An email the engine handed to the outbox."""

    at: datetime
    to: str
    automation: str
    subject: str


@dataclass(frozen=True)
class Cancelled:
    """A pending send cancelled, with the engine's reason."""

    at: datetime
    to: str
    automation: str
    reason: str


@dataclass(frozen=True)
class Failed:
    """A send that failed for good (a render error, a permanent provider error)."""

    at: datetime
    to: str
    automation: str
    reason: str
    error: str


@dataclass(frozen=True)
class Note:
    """A scenario step the engine did not take as written (a failure), or refused (`ok`)."""

    at: datetime
    line: int
    message: str
    failure: bool


@dataclass
class Timeline:
    """What happened during one scenario."""

    sends: list[Sent] = field(default_factory=list)
    cancellations: list[Cancelled] = field(default_factory=list)
    failures: list[Failed] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
