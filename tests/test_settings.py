"""Settings: postwright.yaml plus environment, and the start-up errors they raise."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from runner.cli.settings import SettingsError, is_loopback, load_settings
from runner.core.clock import FakeClock
from runner.core.store_options import StoreOptions
from runner.engine.context import unsubscribe_key
from runner.store import open_store
from tests.harness import START


def test_zero_configuration_defaults(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, {})
    assert settings.database_url == f"sqlite:///{tmp_path}/.postwright/postwright.db"
    assert settings.timezone == "UTC"
    assert settings.api_keys == frozenset()
    assert not settings.auth_required
    assert list(settings.providers) == ["default"]
    assert settings.providers["default"].type == "outbox"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    (tmp_path / "postwright.yaml").write_text("timezone: Asia/Seoul\n", encoding="utf-8")
    environ = {
        "POSTWRIGHT_TIMEZONE": "Europe/Paris",
        "POSTWRIGHT_PUBLIC_URL": "https://mail.example/",
        "POSTWRIGHT_DATABASE_URL": "sqlite:///elsewhere.db",
        "POSTWRIGHT_API_KEYS": "one, two",
    }
    settings = load_settings(tmp_path, environ)
    assert settings.timezone == "Europe/Paris"
    assert settings.public_url == "https://mail.example"
    assert settings.database_url == "sqlite:///elsewhere.db"
    assert settings.api_keys == frozenset({"one", "two"})


def test_store_options_come_from_the_file_then_the_environment(tmp_path: Path) -> None:
    assert load_settings(tmp_path, {}).store == StoreOptions(
        integrity_check=True, lock_timeout=10, statement_timeout=60, idle_in_transaction_timeout=5
    )
    config = "store:\n  integrity_check: skip\n  lock_timeout: 30s\n  statement_timeout: 2m\n"
    (tmp_path / "postwright.yaml").write_text(config, encoding="utf-8")
    environ = {"POSTWRIGHT_STORE_LOCK_TIMEOUT": "15s", "POSTWRIGHT_STORE_INTEGRITY_CHECK": "quick"}
    assert load_settings(tmp_path, environ).store == StoreOptions(
        integrity_check=True, lock_timeout=15, statement_timeout=120, idle_in_transaction_timeout=5
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("POSTWRIGHT_STORE_IDLE_IN_TRANSACTION_TIMEOUT", "0s", "longer than zero"),
        ("POSTWRIGHT_STORE_LOCK_TIMEOUT", "soon", "not a duration"),
        ("POSTWRIGHT_STORE_INTEGRITY_CHECK", "full", "'quick' or 'skip'"),
    ],
)
def test_a_bad_store_override_names_its_variable(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=f"{variable}='{value}': .*{message}"):
        load_settings(tmp_path, {variable: value})


def test_file_timezone_used_without_override(tmp_path: Path) -> None:
    (tmp_path / "postwright.yaml").write_text("timezone: Asia/Seoul\n", encoding="utf-8")
    assert load_settings(tmp_path, {}).timezone == "Asia/Seoul"


def test_invalid_config_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "postwright.yaml").write_text("timezone: UTC\nbogus: 1\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"postwright\.yaml:2:1: .*bogus") as caught:
        load_settings(tmp_path, {})
    assert caught.value.exit_code == 2


def test_named_variable_missing_is_named(tmp_path: Path) -> None:
    (tmp_path / "postwright.yaml").write_text("api_keys_env: MY_KEYS\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="MY_KEYS"):
        load_settings(tmp_path, {})


def test_provider_secret_missing_is_named(tmp_path: Path) -> None:
    config = "providers:\n  default:\n    type: resend\n    api_key_env: RESEND_KEY\n"
    (tmp_path / "postwright.yaml").write_text(config, encoding="utf-8")
    with pytest.raises(SettingsError, match="RESEND_KEY"):
        load_settings(tmp_path, {})
    settings = load_settings(tmp_path, {"RESEND_KEY": "re_123"})
    assert settings.provider_secrets["default"] == {"api_key": "re_123"}


def test_https_public_url_required_with_keys(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="https"):
        load_settings(tmp_path, {"POSTWRIGHT_API_KEYS": "k"})


def test_non_loopback_host_without_keys_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no API keys") as caught:
        load_settings(tmp_path, {}, host="0.0.0.0")
    assert caught.value.exit_code == 2
    keyed = {"POSTWRIGHT_API_KEYS": "k", "POSTWRIGHT_PUBLIC_URL": "https://x.example"}
    assert load_settings(tmp_path, keyed, host="0.0.0.0").host == "0.0.0.0"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.4", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_bad_timezone_and_webhook_secret(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="Mars/Olympus"):
        load_settings(tmp_path, {"POSTWRIGHT_TIMEZONE": "Mars/Olympus"})
    (tmp_path / "postwright.yaml").write_text("event_webhook_secrets_env: HOOKS\n", "utf-8")
    with pytest.raises(SettingsError, match="whsec_"):
        load_settings(tmp_path, {"HOOKS": "plain"})
    assert load_settings(tmp_path, {"HOOKS": "whsec_a whsec_b"}).event_webhook_secrets == (
        "whsec_a",
        "whsec_b",
    )


def test_unsubscribe_key_generated_once_and_kept(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, {})

    async def twice() -> tuple[bytes, bytes]:
        first_store = open_store(settings.database_url, FakeClock(START))
        first = await unsubscribe_key(settings.unsubscribe_key, first_store)
        await first_store.close()
        second_store = open_store(settings.database_url, FakeClock(START))
        second = await unsubscribe_key(settings.unsubscribe_key, second_store)
        await second_store.close()
        return first, second

    first, second = asyncio.run(twice())
    assert len(first) == 32
    assert first == second


def test_configured_unsubscribe_key_wins(tmp_path: Path) -> None:
    (tmp_path / "postwright.yaml").write_text("unsubscribe_key_env: UNSUB\n", "utf-8")
    settings = load_settings(tmp_path, {"UNSUB": "a-long-enough-secret-key"})
    assert settings.unsubscribe_key == b"a-long-enough-secret-key"


def test_http_limits_from_the_file_and_the_environment(tmp_path: Path) -> None:
    assert load_settings(tmp_path, {}).http.max_backlog == 100_000  # on by default
    config = "http:\n  header_timeout: 5s\n  max_backlog: 500\n"
    (tmp_path / "postwright.yaml").write_text(config, encoding="utf-8")
    settings = load_settings(tmp_path, {"POSTWRIGHT_HTTP_MAX_BACKLOG": "20"})
    assert (settings.http.header_timeout, settings.http.max_backlog) == (5, 20)
    assert settings.http.body_timeout == 30
    with pytest.raises(SettingsError, match=r"POSTWRIGHT_HTTP_BODY_TIMEOUT: .*duration"):
        load_settings(tmp_path, {"POSTWRIGHT_HTTP_BODY_TIMEOUT": "soon"})
    with pytest.raises(SettingsError, match="POSTWRIGHT_HTTP_MAX_IN_FLIGHT"):
        load_settings(tmp_path, {"POSTWRIGHT_HTTP_MAX_IN_FLIGHT": "0"})
    (tmp_path / "postwright.yaml").write_text("http:\n  max_connections: 0\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"postwright\.yaml:2:.*max_connections"):
        load_settings(tmp_path, {})


def test_allowed_hosts_include_public_url(tmp_path: Path) -> None:
    config = "allowed_hosts: [Postwright.Internal]\npublic_url: http://[::2]:8080\n"
    (tmp_path / "postwright.yaml").write_text(config, encoding="utf-8")
    assert load_settings(tmp_path, {}).allowed_hosts == {"postwright.internal", "[::2]"}
    environ = {"POSTWRIGHT_ALLOWED_HOSTS": "a.example b.example"}
    assert load_settings(tmp_path, environ).allowed_hosts == {"a.example", "b.example", "[::2]"}
    with pytest.raises(SettingsError, match="POSTWRIGHT_ALLOWED_HOSTS: 'http://x' is not a"):
        load_settings(tmp_path, {"POSTWRIGHT_ALLOWED_HOSTS": "http://x"})


def test_the_sample_configuration_loads(tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parent.parent / "docs" / "postwright.example.yaml"
    (tmp_path / "postwright.yaml").write_bytes(sample.read_bytes())
    environ = dict.fromkeys(
        ["POSTWRIGHT_API_KEYS", "POSTWRIGHT_EVENT_SECRETS", "POSTMARK_TOKEN", "POSTMARK_HOOK_USER",
         "POSTMARK_HOOK_PASSWORD", "RESEND_API_KEY", "RESEND_WEBHOOK_SECRET", "MAILGUN_API_KEY",
         "MAILGUN_SIGNING_KEY", "SENDGRID_API_KEY", "SENDGRID_WEBHOOK_KEY"],
        "k",
    )  # fmt: skip
    environ["POSTWRIGHT_EVENT_SECRETS"] = "whsec_c2VjcmV0"
    environ["POSTWRIGHT_UNSUBSCRIBE_KEY"] = "x" * 32
    settings = load_settings(tmp_path, environ)
    assert "postwright.internal" in settings.allowed_hosts
    assert settings.http.max_backlog == 100_000
    assert settings.repository_web_url == "https://github.com/acme/mail"
