"""Settings: defaults, environment variables, the TOML file, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from guestcomms.config import DEFAULT_DATABASE_URL, load_settings
from guestcomms.errors import ConfigError


def test_defaults_are_the_embedded_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing set, guestcomms uses SQLite and the dev outbox (no SMTP host)."""
    for name in ("GUESTCOMMS_DATABASE_URL", "GUESTCOMMS_SMTP_HOST", "GUESTCOMMS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.smtp_host is None
    assert settings.is_sqlite


def test_environment_overrides_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The TOML file sets values; an environment variable beats it."""
    config = tmp_path / "guestcomms.toml"
    config.write_text('batch_size = 77\nsmtp_host = "mail.example"\n')
    monkeypatch.setenv("GUESTCOMMS_CONFIG_FILE", str(config))
    monkeypatch.setenv("GUESTCOMMS_BATCH_SIZE", "55")
    settings = load_settings()
    assert settings.smtp_host == "mail.example"
    assert settings.batch_size == 55


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("GUESTCOMMS_BATCH_SIZE", "0", "GUESTCOMMS_BATCH_SIZE"),
        ("GUESTCOMMS_LEASE_SECONDS", "soon", "GUESTCOMMS_LEASE_SECONDS"),
        ("GUESTCOMMS_DATABASE_URL", "mysql://db/x", "GUESTCOMMS_DATABASE_URL"),
        ("GUESTCOMMS_SMTP_SECURITY", "ssl3", "GUESTCOMMS_SMTP_SECURITY"),
    ],
)
def test_invalid_setting_names_itself_in_one_line(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    """A bad value raises ConfigError whose one-line message names the variable."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_production_refuses_the_dev_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production mode will not start with the built-in development secret key."""
    monkeypatch.setenv("GUESTCOMMS_ENVIRONMENT", "production")
    monkeypatch.delenv("GUESTCOMMS_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="secret_key"):
        load_settings()


def test_machine_networks_from_the_environment_or_the_toml_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Comma-separated CIDRs in the environment, a list in TOML; a bad entry is named."""
    monkeypatch.delenv("GUESTCOMMS_CONFIG_FILE", raising=False)
    monkeypatch.setenv("GUESTCOMMS_TRACKING_MACHINE_NETWORKS", "198.51.100.0/24, 2001:db8::/32")
    assert [str(n) for n in load_settings().tracking_machine_networks] == [
        "198.51.100.0/24",
        "2001:db8::/32",
    ]
    monkeypatch.delenv("GUESTCOMMS_TRACKING_MACHINE_NETWORKS")
    config = tmp_path / "guestcomms.toml"
    config.write_text('tracking_machine_networks = ["203.0.113.0/28"]\n')
    monkeypatch.setenv("GUESTCOMMS_CONFIG_FILE", str(config))
    assert [str(n) for n in load_settings().tracking_machine_networks] == ["203.0.113.0/28"]
    monkeypatch.setenv("GUESTCOMMS_TRACKING_MACHINE_NETWORKS", "198.51.100.0/24, 198.51.100.1/24")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith("invalid setting GUESTCOMMS_TRACKING_MACHINE_NETWORKS:")
    assert "198.51.100.1/24 has host bits set" in message
    assert "\n" not in message
