"""The real ``guestcomms`` console script, run as a subprocess against a fresh SQLite file."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import make_settings, running_app

CLI_TIMEOUT_SECONDS = 120


def _script() -> str:
    beside_python = Path(sys.executable).parent / "guestcomms"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("guestcomms")
    if found is None:
        pytest.fail("the guestcomms console script is not installed (pip install -e .)")
    return found


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``guestcomms *args`` with only our ``GUESTCOMMS_*`` variables set, and wide output."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GUESTCOMMS_")}
    # a wide terminal keeps Rich tables from wrapping the cells the tests look for
    clean.update({"COLUMNS": "200", "GUESTCOMMS_LOG_LEVEL": "WARNING"}, **env)
    return subprocess.run(
        [_script(), *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """The URL of a SQLite file that does not exist yet (the CLI creates and migrates it)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"


def test_db_upgrade_creates_the_database(db_url: str, tmp_path: Path) -> None:
    """`db upgrade` migrates a new database and says so."""
    result = run_cli("db", "upgrade", env={"GUESTCOMMS_DATABASE_URL": db_url})
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    assert (tmp_path / "cli.db").is_file()


async def test_keys_create_prints_a_working_key(db_url: str) -> None:
    """`keys create` prints exactly one line, the key, and the API accepts it."""
    result = await asyncio.to_thread(
        run_cli, "keys", "create", "--org", "Ana & Ben", env={"GUESTCOMMS_DATABASE_URL": db_url}
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("gck_")
    async with running_app(make_settings(db_url)) as api, api.as_key(lines[0]) as client:
        response = await client.get("/v1/contacts")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("variable", "value"),
    [("GUESTCOMMS_BATCH_SIZE", "0"), ("GUESTCOMMS_DATABASE_URL", "mysql://x")],
)
def test_invalid_setting_is_one_line_naming_it(db_url: str, variable: str, value: str) -> None:
    """An invalid setting exits non-zero with one stderr line naming it, and no traceback."""
    result = run_cli("db", "upgrade", env={"GUESTCOMMS_DATABASE_URL": db_url, variable: value})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_demo_sends_150_and_can_run_again(db_url: str) -> None:
    """`demo` sends 150 invitations to the outbox; a second run reuses the guests."""
    env = {"GUESTCOMMS_DATABASE_URL": db_url}
    first = run_cli("demo", env=env)
    assert first.returncode == 0, first.stderr
    assert re.search(r"sent\s*│\s*150\b", first.stdout), first.stdout
    assert "150 guests added, 0 updated" in first.stdout
    assert "http://127.0.0.1:8000/outbox" in first.stdout

    again = run_cli("demo", env=env)
    assert again.returncode == 0, again.stderr
    assert re.search(r"sent\s*│\s*150\b", again.stdout), again.stdout
    assert "0 guests added, 150 updated" in again.stdout

    outbox = run_cli("outbox", "--limit", "5", env=env)
    assert outbox.returncode == 0, outbox.stderr
    assert "newest 5" in outbox.stdout
    assert outbox.stdout.count("@example.com") == 5
    assert "You're invited," in outbox.stdout


def test_config_file_sets_a_value(tmp_path: Path) -> None:
    """GUESTCOMMS_CONFIG_FILE names a TOML file whose values are used."""
    database = tmp_path / "from-toml.db"
    config = tmp_path / "guestcomms.toml"
    config.write_text(f'database_url = "sqlite+aiosqlite:///{database}"\n')
    result = run_cli("db", "upgrade", env={"GUESTCOMMS_CONFIG_FILE": str(config)})
    assert result.returncode == 0, result.stderr
    assert database.is_file()


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    """A GUESTCOMMS_CONFIG_FILE that does not exist is a one-line error naming it."""
    missing = tmp_path / "nope.toml"
    result = run_cli("db", "upgrade", env={"GUESTCOMMS_CONFIG_FILE": str(missing)})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "GUESTCOMMS_CONFIG_FILE" in lines[0]
    assert "Traceback" not in result.stderr
