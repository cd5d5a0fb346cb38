"""The runner's settings as one frozen value: read once at start-up (by the command line) and
passed down to every part that needs them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runner.core.config import Config, HttpLimits, Provider
from runner.core.store_options import StoreOptions

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


@dataclass(frozen=True)
class Settings:
    """Everything the runner reads from its configuration, fixed at start-up."""

    repo: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    database_url: str = ""
    timezone: str = "UTC"
    public_url: str = "http://127.0.0.1:8080"
    api_keys: frozenset[str] = frozenset()
    event_webhook_secrets: tuple[str, ...] = ()
    unsubscribe_key: bytes | None = None
    event_id_retention: int = 30 * 86_400
    # Hosts a keyless runner answers besides loopback ones: `allowed_hosts` and public_url's.
    allowed_hosts: frozenset[str] = frozenset()
    http: HttpLimits = field(default_factory=HttpLimits)
    # The repository's web page (`repository.web_url`): the dashboard links commits under it.
    repository_web_url: str | None = None
    store: StoreOptions = field(default_factory=StoreOptions)
    config: Config = field(default_factory=Config)
    providers: Mapping[str, Provider] = field(default_factory=dict)
    # provider name -> {setting without `_env`: secret value}, resolved from the environment
    provider_secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def auth_required(self) -> bool:
        """Requests need a bearer key (or a webhook signature) only when keys are configured."""
        return bool(self.api_keys)
