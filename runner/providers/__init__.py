"""Email providers: the port (`base`), the adapters, and the registry of types.

Adding a provider is one module and one entry in PROVIDER_TYPES. Adapters are imported
inside their factory, so the registry loads even when an adapter's module is missing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import httpx

from runner.core.config import Config
from runner.core.config import Provider as ProviderSettings
from runner.providers.base import (
    OutgoingMessage,
    Provider,
    ProviderConfigError,
    ProviderError,
    SendResult,
)
from runner.providers.gate import ProviderGate
from runner.providers.http import make_client
from runner.providers.outbox import OutboxProvider
from runner.providers.ratelimit import RateLimiter
from runner.providers.webhooks import WebhookBatch

if TYPE_CHECKING:
    from runner.core.settings import Settings

__all__ = [
    "PROVIDER_TYPES",
    "OutgoingMessage",
    "Provider",
    "ProviderConfigError",
    "ProviderError",
    "ProviderGate",
    "Providers",
    "SendResult",
    "build_providers",
    "webhook_parser",
]

Factory = Callable[[str, ProviderSettings, Mapping[str, str], httpx.AsyncClient], Provider]


def _outbox(
    name: str, config: ProviderSettings, secrets: Mapping[str, str], client: httpx.AsyncClient
) -> Provider:
    return OutboxProvider(name)


def _adapter(module: str, cls: str) -> Factory:
    """A factory importing `runner.providers.<module>.<cls>` on first use."""

    def build(
        name: str, config: ProviderSettings, secrets: Mapping[str, str], client: httpx.AsyncClient
    ) -> Provider:
        adapter: Any = getattr(importlib.import_module(f"runner.providers.{module}"), cls)
        provider: Provider = adapter(name, config, secrets, client)
        return provider

    return build


# type in postwright.yaml -> factory(name, provider configuration, secrets, shared client).
PROVIDER_TYPES: dict[str, Factory] = {
    "outbox": _outbox,
    "postmark": _adapter("postmark", "PostmarkProvider"),
    "sendgrid": _adapter("sendgrid", "SendgridProvider"),
    "mailgun": _adapter("mailgun", "MailgunProvider"),
    "resend": _adapter("resend", "ResendProvider"),
}


@dataclass(frozen=True, eq=False)
class Providers(Mapping[str, Provider]):
    """The configured providers by name (read-only), with what the sender shares between
    their sends: a rate limiter per name (when configured), the 401/403 gate, and the HTTP
    client. Made by `build_providers`, or directly from ready providers."""

    by_name: Mapping[str, Provider] = field(default_factory=dict)
    limiters: Mapping[str, RateLimiter] = field(default_factory=dict)
    gate: ProviderGate = field(default_factory=ProviderGate)
    client: httpx.AsyncClient | None = None
    owns_client: bool = False  # the client was made here: `aclose()` closes it

    def __post_init__(self) -> None:
        # Copies behind read-only views: nobody swaps a provider or limiter after start-up.
        object.__setattr__(self, "by_name", MappingProxyType(dict(self.by_name)))
        object.__setattr__(self, "limiters", MappingProxyType(dict(self.limiters)))

    def __getitem__(self, name: str) -> Provider:
        return self.by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.by_name)

    def __len__(self) -> int:
        return len(self.by_name)

    def with_limiters(self, limiters: Mapping[str, RateLimiter]) -> Providers:
        """The same providers with these limiters in place of those of the same names."""
        return replace(self, limiters={**self.limiters, **limiters})

    def paused(self) -> dict[str, datetime]:
        """Provider name -> when it is probed again, for those paused after 401/403."""
        return self.gate.paused()

    async def aclose(self) -> None:
        """Close the HTTP client when it was made here (call once at shutdown)."""
        if self.client is not None and self.owns_client:
            await self.client.aclose()


def build_providers(
    source: Settings | Config, client: httpx.AsyncClient | None = None
) -> Providers:
    """One provider per configured name, sharing one pooled HTTP client.

    `source` is the runner's Settings (secrets resolved from the environment); a bare
    Config builds only providers that need no secret (the outbox). `client` defaults to
    `make_client()`, made only when some provider talks HTTP, and closed by `aclose()`.
    """
    if isinstance(source, Config):
        configured: Mapping[str, ProviderSettings] = source.providers
        secrets: Mapping[str, Mapping[str, str]] = {}
    else:
        configured = source.providers or source.config.providers
        secrets = source.provider_secrets
    owns = client is None and any(p.type != "outbox" for p in configured.values())
    shared = make_client() if owns else client
    built: dict[str, Provider] = {}
    limiters: dict[str, RateLimiter] = {}
    # An error here leaves a fresh client unused: it holds no connection yet.
    for name, config in configured.items():
        built[name] = _build(name, config, secrets, shared)
        rate = getattr(config, "rate_limit", None)
        if rate is not None:
            limiters[name] = RateLimiter(rate)
    return Providers(built, limiters=limiters, client=shared, owns_client=owns)


def _build(
    name: str,
    config: ProviderSettings,
    secrets: Mapping[str, Mapping[str, str]],
    client: httpx.AsyncClient | None,
) -> Provider:
    factory = PROVIDER_TYPES.get(config.type)
    if factory is None:
        raise ProviderConfigError(
            f"provider {name!r}: type {config.type!r} is not supported by this runner"
            f" (supported: {', '.join(sorted(PROVIDER_TYPES))})"
        )
    if config.type == "outbox":
        return factory(name, config, {}, client or _NO_CLIENT)
    if name not in secrets or client is None:
        raise ProviderConfigError(
            f"provider {name!r}: its secrets are not resolved; build providers from Settings"
        )
    try:
        return factory(name, config, secrets[name], client)
    except ImportError as error:
        raise ProviderConfigError(
            f"provider {name!r}: type {config.type!r} is not available ({error})"
        ) from error


# The outbox never talks HTTP; a placeholder keeps the factory signature uniform.
_NO_CLIENT: Any = None


WebhookParser = Callable[..., WebhookBatch]


def webhook_parser(provider_type: str) -> WebhookParser | None:
    """The `parse_webhook` of a provider type's module (None for the outbox)."""
    if provider_type == "outbox":
        return None
    parser: WebhookParser = importlib.import_module(
        f"runner.providers.{provider_type}"
    ).parse_webhook
    return parser
