"""Email providers: the port (`base`), the adapters, and the registry of types.

Adding a provider is one module and one entry in PROVIDER_TYPES.
"""

from __future__ import annotations

from collections.abc import Callable

from runner.config import Config
from runner.config import Provider as ProviderSettings
from runner.providers.base import (
    OutgoingMessage,
    Provider,
    ProviderConfigError,
    ProviderError,
    SendResult,
)
from runner.providers.outbox import OutboxProvider

__all__ = [
    "PROVIDER_TYPES",
    "OutgoingMessage",
    "Provider",
    "ProviderConfigError",
    "ProviderError",
    "SendResult",
    "build_providers",
]


def _outbox(name: str, settings: ProviderSettings) -> Provider:
    return OutboxProvider(name)


# type in postwright.yaml -> factory(name, provider configuration); real APIs come later.
PROVIDER_TYPES: dict[str, Callable[[str, ProviderSettings], Provider]] = {"outbox": _outbox}


def build_providers(config: Config) -> dict[str, Provider]:
    """One provider per configured name; ProviderConfigError for a type not built yet."""
    built: dict[str, Provider] = {}
    for name, settings in config.providers.items():
        factory = PROVIDER_TYPES.get(settings.type)
        if factory is None:
            raise ProviderConfigError(
                f"provider {name!r}: type {settings.type!r} is not supported by this runner yet"
                f" (supported: {', '.join(sorted(PROVIDER_TYPES))})"
            )
        built[name] = factory(name, settings)
    return built
