"""``guestcomms keys create|list|revoke`` as a subprocess: list shows no secret, revoke works."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.test_cli import run_cli
from tests.support import make_settings, running_app


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """The URL of a SQLite file that does not exist yet (the CLI creates and migrates it)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"


async def test_keys_list_and_revoke(db_url: str) -> None:
    """`keys list` shows the prefix and scopes but not the secret; `keys revoke` makes it 401."""
    env = {"GUESTCOMMS_DATABASE_URL": db_url}
    created = await asyncio.to_thread(
        run_cli, "keys", "create", "--org", "Ana", "--scope", "contacts:read", env=env
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    _, prefix, secret = key.split("_", 2)
    listed = await asyncio.to_thread(run_cli, "keys", "list", "--org", "Ana", env=env)
    assert listed.returncode == 0, listed.stderr
    assert prefix in listed.stdout
    assert "contacts:read" in listed.stdout
    assert secret not in listed.stdout
    unknown = await asyncio.to_thread(
        run_cli, "keys", "create", "--org", "Ana", "--scope", "contacts:raed", env=env
    )
    assert unknown.returncode == 1
    assert "unknown scope" in unknown.stderr
    async with running_app(make_settings(db_url)) as api, api.as_key(key) as client:
        assert (await client.get("/v1/contacts")).status_code == 200
        revoked = await asyncio.to_thread(
            run_cli, "keys", "revoke", "--org", "Ana", prefix, env=env
        )
        assert revoked.returncode == 0, revoked.stderr
        assert "revoked" in revoked.stdout
        assert (await client.get("/v1/contacts")).status_code == 401
        other = await asyncio.to_thread(run_cli, "keys", "revoke", "--org", "Bea", prefix, env=env)
        assert other.returncode == 1  # another organization's name finds nothing
