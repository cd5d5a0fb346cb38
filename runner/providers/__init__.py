"""Email providers: the port (`base`), the adapters, and the registry of types.

Adding a provider is one module and one entry in PROVIDER_TYPES. Adapters are imported
inside their factory, so the registry loads even when an adapter's module is missing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
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
    "paused_providers",
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


class Providers(dict[str, Provider]):
    """The configured providers by name, with what the sender shares between their sends:
    a rate limiter per name (when configured), the 401/403 gate, and the HTTP client."""

    def __init__(
        self,
        items: Iterable[tuple[str, Provider]] = (),
        *,
        limiters: Mapping[str, RateLimiter] | None = None,
        gate: ProviderGate | None = None,
        client: httpx.AsyncClient | None = None,
        owns_client: bool = False,
    ) -> None:
        super().__init__(items)
        self.limiters: dict[str, RateLimiter] = dict(limiters or {})
        self.gate = gate if gate is not None else ProviderGate()
        self.client = client
        self._owns_client = owns_client

    async def aclose(self) -> None:
        """Close the HTTP client when it was made here (call once at shutdown)."""
        if self.client is not None and self._owns_client:
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
    built: list[tuple[str, Provider]] = []
    limiters: dict[str, RateLimiter] = {}
    # An error here leaves a fresh client unused: it holds no connection yet.
    for name, config in configured.items():
        built.append((name, _build(name, config, secrets, shared)))
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


def paused_providers(providers: Mapping[str, Provider]) -> dict[str, datetime]:
    """Provider name -> when it is probed again, for those paused after 401/403."""
    return providers.gate.paused() if isinstance(providers, Providers) else {}


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
