"""Reading the runner's `Settings` (core/settings.py) once at start-up: `postwright.yaml`, then
the environment over it (docs/postwright.example.yaml).

Every problem is a `SettingsError` (exit 2) that names the file and line, or the
environment variable, that needs fixing.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from runner.core.config import HOST_PATTERN, Config, HttpLimits, Provider, StoreConfig
from runner.core.layout import CONFIG_PATH
from runner.core.loader import load_config
from runner.core.settings import DEFAULT_HOST, DEFAULT_PORT, Settings
from runner.core.store_options import StoreOptions
from runner.errors import PostwrightError
from runner.repo.workspace import repo_root

TIMEZONE_VARIABLE = "POSTWRIGHT_TIMEZONE"
PUBLIC_URL_VARIABLE = "POSTWRIGHT_PUBLIC_URL"
API_KEYS_VARIABLE = "POSTWRIGHT_API_KEYS"
ALLOWED_HOSTS_VARIABLE = "POSTWRIGHT_ALLOWED_HOSTS"
HTTP_VARIABLE_PREFIX = "POSTWRIGHT_HTTP_"  # + a key of `http:` in capitals
STORE_VARIABLE_PREFIX = "POSTWRIGHT_STORE_"  # + the `store:` key in capitals


class SettingsError(PostwrightError):
    """The runner cannot start with this configuration (exit 2)."""


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the server reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_database_url(repo: Path) -> str:
    """SQLite under `<repo>/.postwright/` (nothing to configure for one runner)."""
    return f"sqlite:///{repo / '.postwright' / 'postwright.db'}"


def load_settings(
    repo: Path,
    environ: Mapping[str, str],
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    data: Path | None = None,
) -> Settings:
    """Read `<repo>/postwright.yaml` (optional) and apply the environment over it; the default
    SQLite database lives under `data` (default: the repository)."""
    config = _read_config(repo)
    timezone = environ.get(TIMEZONE_VARIABLE) or config.timezone
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"{TIMEZONE_VARIABLE}={timezone!r} is not an IANA time zone") from None
    public_url = (environ.get(PUBLIC_URL_VARIABLE) or config.public_url).rstrip("/")
    database_url = environ.get(config.database_url_env) or default_database_url(data or repo)
    api_keys = frozenset(_split(_named(environ, config.api_keys_env, API_KEYS_VARIABLE)))
    secrets_text = _required(environ, config.event_webhook_secrets_env)
    webhook_secrets = tuple(_split(secrets_text)) if secrets_text is not None else ()
    for secret in webhook_secrets:
        if not secret.startswith("whsec_"):
            raise SettingsError(
                f"{config.event_webhook_secrets_env}: every secret must start with `whsec_`"
            )
    key_text = _required(environ, config.unsubscribe_key_env)
    if key_text is not None and len(key_text) < 16:
        raise SettingsError(f"{config.unsubscribe_key_env}: the unsubscribe key needs 16+ chars")
    if api_keys and not public_url.startswith("https://"):
        raise SettingsError(
            f"public_url {public_url!r} must be https when API keys are set "
            f"(unsubscribe links leave the machine); set {PUBLIC_URL_VARIABLE}"
        )
    if not api_keys and not is_loopback(host):
        raise SettingsError(
            f"refusing to listen on {host}: no API keys are configured, so anyone who can "
            f"reach this address could post events; set {config.api_keys_env or API_KEYS_VARIABLE}"
            " or bind to 127.0.0.1"
        )
    return Settings(
        repo=repo,
        host=host,
        port=port,
        database_url=database_url,
        timezone=timezone,
        public_url=public_url,
        api_keys=api_keys,
        event_webhook_secrets=webhook_secrets,
        unsubscribe_key=key_text.encode("utf-8") if key_text is not None else None,
        event_id_retention=config.event_id_retention,
        allowed_hosts=_allowed_hosts(config, environ, public_url),
        http=_http_limits(config, environ),
        repository_web_url=config.repository.web_url,
        store=_store_options(config.store, environ),
        config=config,
        providers=dict(config.providers),
        provider_secrets={
            name: _provider_secrets(name, provider, environ)
            for name, provider in config.providers.items()
        },
    )


def _allowed_hosts(config: Config, environ: Mapping[str, str], public_url: str) -> frozenset[str]:
    """The configured hosts (the environment replaces the file's list) and public_url's."""
    text = environ.get(ALLOWED_HOSTS_VARIABLE)
    hosts = _split(text) if text is not None else list(config.allowed_hosts)
    for host in hosts:
        if re.fullmatch(HOST_PATTERN, host) is None:
            raise SettingsError(
                f"{ALLOWED_HOSTS_VARIABLE}: {host!r} is not a host name (no scheme, no port)"
            )
    public_host = urlsplit(public_url).hostname
    if public_host is not None:
        hosts.append(f"[{public_host}]" if ":" in public_host else public_host)
    return frozenset(host.lower().rstrip(".") for host in hosts)


def _http_limits(config: Config, environ: Mapping[str, str]) -> HttpLimits:
    """`http:` of postwright.yaml with POSTWRIGHT_HTTP_<KEY> variables over it."""
    values = config.http.model_dump(mode="json")
    named: dict[str, str] = {}
    for key in HttpLimits.model_fields:
        variable = HTTP_VARIABLE_PREFIX + key.upper()
        if variable in environ:
            values[key] = environ[variable].strip()
            named[key] = variable
    try:
        return HttpLimits.model_validate(values)
    except ValidationError as error:
        detail = error.errors(include_url=False)[0]
        key = str(detail["loc"][0])
        raise SettingsError(f"{named.get(key, f'http.{key}')}: {detail['msg']}") from None


def _read_config(repo: Path) -> Config:
    path = repo / CONFIG_PATH
    if not path.is_file():
        return Config()
    loaded = load_config(CONFIG_PATH, path.read_bytes())
    if loaded.model is None:
        lines = [f"{path}:{f.line}:{f.col}: {f.message} [{f.rule}]" for f in loaded.findings]
        raise SettingsError("invalid configuration:\n" + "\n".join(lines))
    return loaded.model


def _store_options(config: StoreConfig, environ: Mapping[str, str]) -> StoreOptions:
    """`store:` of postwright.yaml, each key overridden by POSTWRIGHT_STORE_<KEY>."""
    for key in StoreConfig.model_fields:
        variable = STORE_VARIABLE_PREFIX + key.upper()
        text = environ.get(variable, "").strip()
        if not text:
            continue
        try:
            config = StoreConfig.model_validate({**config.model_dump(mode="json"), key: text})
        except ValidationError as error:
            raise SettingsError(f"{variable}={text!r}: {error.errors()[0]['msg']}") from None
    return StoreOptions(
        integrity_check=config.integrity_check == "quick",
        lock_timeout=config.lock_timeout,
        statement_timeout=config.statement_timeout,
        idle_in_transaction_timeout=config.idle_in_transaction_timeout,
    )


def _split(text: str | None) -> list[str]:
    if not text:
        return []
    return [part for part in text.replace(",", " ").split() if part]


def _named(environ: Mapping[str, str], configured: str | None, default: str) -> str | None:
    """A configured variable must exist; the default one is optional."""
    if configured is not None:
        return _required(environ, configured)
    return environ.get(default)


def _required(environ: Mapping[str, str], name: str | None) -> str | None:
    if name is None:
        return None
    value = environ.get(name)
    if value is None or not value.strip():
        raise SettingsError(f"environment variable {name} is not set (named in {CONFIG_PATH})")
    return value.strip()


def _provider_secrets(name: str, provider: Provider, environ: Mapping[str, str]) -> dict[str, str]:
    resolved: dict[str, str] = {}
    for key, value in provider.model_dump().items():
        if key.endswith("_env") and isinstance(value, str):
            text = environ.get(value)
            if text is None or not text.strip():
                raise SettingsError(
                    f"environment variable {value} is not set "
                    f"(providers.{name}.{key} in {CONFIG_PATH})"
                )
            resolved[key.removesuffix("_env")] = text.strip()
    return resolved


def settings_of(args: argparse.Namespace, host: str = "127.0.0.1", port: int = 8080) -> Settings:
    """The runner settings of the repository named by `--repo` (default: here)."""
    return load_settings(repo_root(args.repo), os.environ, host, port)
