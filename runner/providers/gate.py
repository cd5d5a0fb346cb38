"""Which providers are paused after 401/403 (README.md "Providers"), kept in memory by the
sender's owner.

A paused provider's sends are put back unattempted until the pause ends; then one send
goes through as a probe: success (or any non-auth outcome) resumes the provider, another
401/403 pauses it again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from runner.providers.retry import AUTH_PAUSE


class ProviderGate:
    """Pause state per provider name; time is always an argument."""

    def __init__(self, pause_seconds: float = AUTH_PAUSE) -> None:
        self.pause = timedelta(seconds=pause_seconds)
        self._until: dict[str, datetime] = {}
        self._probing: dict[str, datetime] = {}  # name -> when its probe was let through

    def pause_provider(self, name: str, now: datetime) -> datetime:
        """Pause `name` from `now` on; returns when it will be probed."""
        until = now + self.pause
        self._until[name] = until
        self._probing.pop(name, None)
        return until

    def resume(self, name: str) -> None:
        """The provider answered something other than 401/403: send again."""
        self._until.pop(name, None)
        self._probing.pop(name, None)

    def held_until(self, name: str, now: datetime) -> datetime | None:
        """When a send to `name` may go, or None when it may go now.

        After the pause has ended the first caller becomes the probe (None) and later
        callers wait, until the probe's outcome resumes or re-pauses the provider. A probe
        that never reached the provider (its send was cancelled) is replaced after a pause.
        """
        until = self._until.get(name)
        if until is None:
            return None
        if now < until:
            return until
        probe = self._probing.get(name)
        if probe is not None and now < probe + self.pause:
            return probe + self.pause
        self._probing[name] = now
        return None

    def probing(self, name: str) -> bool:
        """Whether a probe of the paused `name` is under way (its outcome decides)."""
        return name in self._probing

    def paused(self) -> dict[str, datetime]:
        """Paused provider name -> when it is probed next (for the alert metric)."""
        return dict(self._until)
