"""What the dashboard's reads answer (runner.store.sql_dashboard): message counts by revision
and by day, with the rates the pages and the API show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


class Rates:
    """The open and click rates of a record that counts messages delivered, opened and
    clicked: MessageCounts here, the per-automation Stats of runner.store.base."""

    delivered: int
    opened: int
    clicked: int

    @property
    def open_rate(self) -> float | None:
        """opened / delivered, None before anything was delivered."""
        return self.opened / self.delivered if self.delivered else None

    @property
    def click_rate(self) -> float | None:
        """clicked / delivered, None before anything was delivered."""
        return self.clicked / self.delivered if self.delivered else None


@dataclass(frozen=True)
class MessageCounts(Rates):
    """Messages sent, delivered, opened and clicked (each counted once), unique people."""

    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    unique_openers: int = 0
    unique_clickers: int = 0

    @property
    def delivery_rate(self) -> float | None:
        """delivered / sent, None before anything was sent."""
        return self.delivered / self.sent if self.sent else None


@dataclass(frozen=True)
class RevisionStats:
    """The messages one applied revision rendered, with the commit that carried it."""

    revision: int
    commit: str | None
    subject: str | None
    applied_at: datetime | None
    counts: MessageCounts


@dataclass(frozen=True)
class DayStats:
    """The messages of one automation sent on one UTC day (`YYYY-MM-DD`)."""

    day: str
    counts: MessageCounts
