"""Settings: one pydantic-settings model read from ``GUESTCOMMS_*`` variables and a TOML file.

Precedence, highest first: keyword arguments, environment variables, the TOML file named by
``GUESTCOMMS_CONFIG_FILE`` (if any), defaults. :func:`load_settings` turns a validation failure
into a one-line :class:`~guestcomms.errors.ConfigError` naming the setting.
"""

from __future__ import annotations

import ipaddress
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import limits
from pydantic import (
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from guestcomms.domain.quiet_hours import QuietHoursError, SendingWindow
from guestcomms.errors import ConfigError
from guestcomms.security.encryption import parse_master_key

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/guestcomms.db"
DEV_SECRET_KEY = "dev-insecure-secret-key-change-me"  # noqa: S105 - refused in production


class Environment(StrEnum):
    """Where the process runs; production refuses insecure defaults."""

    DEV = "dev"
    TEST = "test"
    PRODUCTION = "production"


class SmtpSecurity(StrEnum):
    """How the SMTP connection is protected."""

    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"  # implicit TLS, usually port 465


class Settings(BaseSettings):
    """Every knob guestcomms reads. Field names map to ``GUESTCOMMS_<NAME>`` variables."""

    model_config = SettingsConfigDict(env_prefix="GUESTCOMMS_", extra="forbid")

    environment: Environment = Environment.DEV
    database_url: str = DEFAULT_DATABASE_URL
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    log_level: str = "INFO"
    log_json: bool = True

    # email
    smtp_host: str | None = None  # none configured -> the dev outbox provider
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: SmtpSecurity = SmtpSecurity.NONE
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
    smtp_pool_size: int = Field(default=8, ge=1, le=256)
    smtp_validate_certs: bool = True
    email_from: str = "Guestcomms <noreply@guestcomms.localhost>"
    email_reply_to: str | None = None
    message_id_domain: str | None = None  # defaults to the From address's domain
    # When set, SMTP sends use a VERP return path bounces+dlv_<hex>@<bounce_domain> and
    # `guestcomms bounces` accepts the DSNs and complaint reports sent to it.
    bounce_domain: str | None = None
    # DKIM: SMTP sends are signed when <dkim_keys_dir>/<From domain>.<dkim_selector>.pem
    # exists (`guestcomms dkim keygen DOMAIN` writes it; docs/operations.md "DKIM")
    dkim_keys_dir: Path | None = None
    dkim_selector: str = "gc1"

    # encryption at rest of personal fields (docs/operations.md, "Encryption at rest"): the
    # base64 256-bit key that wraps the data keys (`guestcomms keys master-key` makes one);
    # unset: fields are stored in plaintext
    master_key: SecretStr | None = None
    # how long a process may encrypt with a data key after a rotation made another active
    data_key_refresh_seconds: float = Field(default=30.0, gt=0)

    # shared state between processes (provider rate limits); in-process when unset
    redis_url: str | None = None  # e.g. redis://127.0.0.1:6379/0

    # worker and queue
    # batches in flight per worker process: one sends while another claims or records
    worker_concurrency: int = Field(default=2, ge=1, le=64)
    batch_size: int = Field(default=200, ge=1, le=5000)
    # within a priority, organizations take turns in each claim (db/queue.py), so one
    # organization's huge campaign cannot hold up another's messages; false: oldest first
    fair_share: bool = True
    # one more lane per worker that claims only emergencies, woken the moment one is sent
    emergency_lane: bool = True
    # guests per campaign fan-out transaction (each written with its deliveries and cursor)
    campaign_batch_size: int = Field(default=5000, ge=1, le=50_000)
    lease_seconds: float = Field(default=60.0, gt=0)
    poll_interval_seconds: float = Field(default=1.0, gt=0)
    max_attempts: int = Field(default=8, ge=1, le=100)
    retry_base_seconds: float = Field(default=2.0, gt=0)
    retry_max_seconds: float = Field(default=3600.0, gt=0)
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    breaker_failure_threshold: int = Field(default=5, ge=1)  # consecutive transient failures
    breaker_cooldown_seconds: float = Field(default=30.0, gt=0)  # open -> half-open
    # when SMS and calls may go out, in each recipient's zone, for organizations that set no
    # quiet_hours of their own: "HH:MM-HH:MM" (the sending window), or "off"
    quiet_hours: str = "08:00-21:00"

    # API
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_recipients_per_message: int = Field(default=100_000, ge=1)
    default_page_size: int = Field(default=50, ge=1, le=1000)
    max_page_size: int = Field(default=500, ge=1, le=10_000)
    # requests per API key (a ``limits`` string) unless the key has its own ``rate_limit``
    api_rate_limit: str = "600/minute"
    default_phone_region: str | None = None  # e.g. "GB" to accept national numbers
    # where guests reach this server: unsubscribe links (/u/TOKEN) are built on it
    public_base_url: str = "http://localhost:8000"
    # networks whose opens and clicks are machines' (tracking/machine.py, "known-network"):
    # a mail security gateway's egress, an office's scanner; comma-separated CIDRs
    tracking_machine_networks: Annotated[list[IPvAnyNetwork], NoDecode] = []

    # Prometheus metrics (docs/operations.md "Metrics"): when set, GET /metrics (and the
    # worker's metrics port) require `Authorization: Bearer <metrics_token>`; unset: no auth
    metrics_token: SecretStr | None = None
    # `guestcomms worker` serves its own metrics on this port (unset: not served)
    metrics_port: int | None = Field(default=None, ge=1, le=65535)

    # SSRF guard (guestcomms.security.ssrf): may webhooks and providers call loopback, private
    # and link-local addresses? Unset: yes in dev and test (the simulator is on 127.0.0.1),
    # no in production. Cloud metadata addresses are refused either way.
    allow_private_network_targets: bool | None = None

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg:// "
                f"(got {value.split('://', maxsplit=1)[0]!r})"
            )
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _sending_window(cls, value: str) -> str:
        try:
            SendingWindow.parse(value)
        except QuietHoursError as e:
            raise ValueError(str(e)) from e
        return value

    @field_validator("tracking_machine_networks", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        # "198.51.100.0/24, 2001:db8::/32" in the environment; a list in a TOML file
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            return value
        try:
            return [ipaddress.ip_network(str(part).strip()) for part in value]
        except ValueError as e:  # names the bad entry: "... has host bits set"
            raise ValueError(f"{e} (expected CIDRs such as 198.51.100.0/24)") from e

    @field_validator("master_key")
    @classmethod
    def _master_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_master_key(value.get_secret_value())
        return value

    @field_validator("api_rate_limit")
    @classmethod
    def _rate_limit_string(cls, value: str) -> str:
        try:
            limits.parse(value)
        except ValueError as e:
            raise ValueError(f"expected e.g. '600/minute' ({e})") from e
        return value

    @field_validator("email_from", "email_reply_to")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        # a header value: a line break here would start another header in every email
        if value is not None and any(c in value for c in "\r\n\x00"):
            raise ValueError("line breaks are not allowed in an address")
        return value

    @model_validator(mode="after")
    def _production_is_safe(self) -> Settings:
        if (
            self.environment is Environment.PRODUCTION
            and self.secret_key.get_secret_value() == DEV_SECRET_KEY
        ):
            raise ValueError("secret_key must be set in production (GUESTCOMMS_SECRET_KEY)")
        return self

    @property
    def private_network_targets_allowed(self) -> bool:
        """Whether the SSRF guard lets private addresses through (see the field's comment)."""
        if self.allow_private_network_targets is not None:
            return self.allow_private_network_targets
        return self.environment is not Environment.PRODUCTION

    @property
    def master_key_bytes(self) -> bytes | None:
        """The master key, decoded; None when encryption at rest is off."""
        if self.master_key is None:
            return None
        return parse_master_key(self.master_key.get_secret_value())

    @property
    def is_sqlite(self) -> bool:
        """Whether the store is the embedded SQLite database."""
        return self.database_url.startswith("sqlite")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Add the optional TOML file below the environment."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = os.environ.get("GUESTCOMMS_CONFIG_FILE")
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_path)))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; raise ``ConfigError`` with one line naming the bad setting."""
    toml_path = os.environ.get("GUESTCOMMS_CONFIG_FILE")
    if toml_path and not Path(toml_path).is_file():
        raise ConfigError(f"GUESTCOMMS_CONFIG_FILE: no such file: {toml_path}")
    try:
        return Settings(**overrides)
    except ValidationError as e:
        first = e.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if not first["loc"]:  # a rule across settings: its message names them
            raise ConfigError(f"invalid settings: {message}") from e
        name = "GUESTCOMMS_" + "_".join(str(p) for p in first["loc"]).upper()
        raise ConfigError(f"invalid setting {name}: {message}") from e
    except ValueError as e:  # a TOML file that does not parse
        raise ConfigError(f"invalid configuration file {toml_path}: {e}") from e
