"""Pydantic models of `postwright.yaml`, the runner configuration (every key is shown in
docs/postwright.example.yaml); no I/O.

Secrets never appear in the file: a key ending in `_env` names the
environment variable that holds one.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from runner.core.fields import ID_PATTERN, PositiveDuration, TimeZone
from runner.core.weblinks import check_web_url

ENV_NAME = Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")]
RATE_LIMIT_PATTERN = r"^[1-9][0-9]*/(s|m|h)$"
RateLimit = Annotated[str, Field(pattern=RATE_LIMIT_PATTERN, examples=["50/s", "1000/m"])]
BaseUrl = Annotated[str, Field(pattern=r"^https?://[^/\s?#]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OutboxProvider(_Strict):
    """Stores rendered messages in the store instead of sending them (the default)."""

    type: Literal["outbox"]


class PostmarkProvider(_Strict):
    """Postmark's Email API; webhooks authenticated with HTTP Basic credentials."""

    type: Literal["postmark"]
    server_token_env: ENV_NAME
    webhook_username_env: ENV_NAME | None = None
    webhook_password_env: ENV_NAME | None = None
    message_stream: str = "outbound"
    base_url: BaseUrl = "https://api.postmarkapp.com"
    rate_limit: RateLimit | None = None


class SendgridProvider(_Strict):
    """SendGrid v3 Mail Send; webhooks signed with ECDSA P-256."""

    type: Literal["sendgrid"]
    api_key_env: ENV_NAME
    webhook_public_key_env: ENV_NAME | None = None
    base_url: BaseUrl = "https://api.sendgrid.com"
    rate_limit: RateLimit | None = None


class MailgunProvider(_Strict):
    """Mailgun Messages API; webhooks signed with HMAC over timestamp and token."""

    type: Literal["mailgun"]
    api_key_env: ENV_NAME
    domain: Annotated[str, Field(min_length=3)]
    region: Literal["us", "eu"] = "us"
    webhook_signing_key_env: ENV_NAME | None = None
    base_url: BaseUrl | None = None
    rate_limit: RateLimit | None = None


class ResendProvider(_Strict):
    """Resend's Email API; webhooks signed the Svix / Standard Webhooks way."""

    type: Literal["resend"]
    api_key_env: ENV_NAME
    webhook_secret_env: ENV_NAME | None = None
    base_url: BaseUrl = "https://api.resend.com"
    rate_limit: RateLimit | None = None


Provider = Annotated[
    OutboxProvider | PostmarkProvider | SendgridProvider | MailgunProvider | ResendProvider,
    Field(discriminator="type"),
]
DEFAULT_PROVIDERS: dict[str, Provider] = {"default": OutboxProvider(type="outbox")}
# A host as a browser names it in `Host`, without scheme or port: `mail.shop.example`, an
# IPv4 address, or an IPv6 address in brackets.
HOST_PATTERN = r"^([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])$"
HostName = Annotated[str, Field(pattern=HOST_PATTERN, examples=["mail.shop.example"])]


class HttpLimits(_Strict):
    """How long a client may take to send a request, and how much the server takes at once.

    Every bound is on by default; docs/postwright.example.yaml explains each one.
    """

    header_timeout: PositiveDuration = 10
    body_timeout: PositiveDuration = 30
    max_connections: Annotated[int, Field(ge=1)] = 1024
    max_in_flight: Annotated[int, Field(ge=1)] = 256
    max_backlog: Annotated[int, Field(ge=1)] = 100_000


class StoreConfig(_Strict):
    """How the runner opens its store (docs/scaling.md); environment variables override it."""

    integrity_check: Literal["quick", "skip"] = "quick"  # SQLite: quick_check at start-up
    lock_timeout: PositiveDuration = 10  # PostgreSQL: the longest wait for a lock
    statement_timeout: PositiveDuration = 60  # PostgreSQL: the longest statement
    # PostgreSQL: a session idle this long inside a transaction is ended by the server
    idle_in_transaction_timeout: PositiveDuration = 5


class GitConfig(_Strict):
    """`git:`: how `serve --git` follows a remote repository (docs/git-follow.md); command-line
    flags override it. Secrets stay in the environment: these name the variables."""

    url: Annotated[str, Field(min_length=1)] | None = None
    ref: Annotated[str, Field(pattern=r"^[A-Za-z0-9._/-]+$")] = "main"
    interval: PositiveDuration = 30
    timeout: PositiveDuration = 60  # one fetch at most
    token_env: ENV_NAME = "POSTWRIGHT_GIT_TOKEN"
    username: Annotated[str, Field(min_length=1)] = "x-access-token"
    ssh_key_file: str | None = None
    known_hosts_file: str | None = None
    webhook_secret_env: ENV_NAME = "POSTWRIGHT_GIT_WEBHOOK_SECRET"


def _web_url(text: str) -> str:
    try:
        return check_web_url(text)
    except ValueError as error:
        raise PydanticCustomError("schema", str(error)) from None


class RepositoryConfig(_Strict):
    """`repository:`: where people browse the repository; the dashboard links each applied
    commit to `{web_url}/commit/{sha}` (docs/dashboard.md)."""

    web_url: Annotated[str, AfterValidator(_web_url)] | None = None


class Config(_Strict):
    """`postwright.yaml` at the repository root; every key optional."""

    timezone: TimeZone = "UTC"
    public_url: Annotated[str, Field(pattern=r"^https?://\S+$")] = "http://127.0.0.1:8080"
    database_url_env: ENV_NAME = "POSTWRIGHT_DATABASE_URL"
    api_keys_env: ENV_NAME | None = None
    event_webhook_secrets_env: ENV_NAME | None = None
    unsubscribe_key_env: ENV_NAME | None = None
    event_id_retention: PositiveDuration = 30 * 86_400
    max_emails_per_day: Annotated[int, Field(ge=1)] = 3
    allowed_hosts: list[HostName] = Field(default_factory=list)
    http: HttpLimits = Field(default_factory=HttpLimits)
    store: StoreConfig = Field(default_factory=StoreConfig)
    git: GitConfig = Field(default_factory=GitConfig)
    repository: RepositoryConfig = Field(default_factory=RepositoryConfig)
    providers: dict[Annotated[str, Field(pattern=ID_PATTERN)], Provider] = Field(
        default_factory=lambda: dict(DEFAULT_PROVIDERS), min_length=1
    )

    @model_validator(mode="after")
    def _some_provider(self) -> Config:
        if not self.providers:
            raise ValueError("`providers` may be left out, but not empty")
        return self
