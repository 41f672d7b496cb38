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


async def test_master_key_and_rotate_data_key(db_url: str) -> None:
    """`keys master-key` prints a usable key; `keys rotate-data-key` refuses without one, and
    with one re-encrypts the contacts (k2) that the API still reads back."""
    made = await asyncio.to_thread(run_cli, "keys", "master-key", env={})
    assert made.returncode == 0, made.stderr
    master = made.stdout.strip()
    env = {"GUESTCOMMS_DATABASE_URL": db_url}
    created = await asyncio.to_thread(run_cli, "keys", "create", "--org", "Ana", env=env)
    key = created.stdout.strip()
    off = await asyncio.to_thread(run_cli, "keys", "rotate-data-key", env=env)
    assert off.returncode == 1
    assert "GUESTCOMMS_MASTER_KEY" in off.stderr
    settings = make_settings(db_url, master_key=master)
    async with running_app(settings) as api, api.as_key(key) as client:
        response = await client.post("/v1/contacts", json={"email": "rotated@cli.example"})
        assert response.status_code == 201, response.text
        contact = response.json()["id"]
        rotated = await asyncio.to_thread(
            run_cli,
            "keys",
            "rotate-data-key",
            "--settle",
            "0",
            env={**env, "GUESTCOMMS_MASTER_KEY": master},
        )
        assert rotated.returncode == 0, rotated.stderr
        assert "data key k2 is active" in rotated.stdout
        read = await client.get(f"/v1/contacts/{contact}")
        assert read.json()["email"] == "rotated@cli.example"
    bad = await asyncio.to_thread(
        run_cli, "keys", "rotate-data-key", env={**env, "GUESTCOMMS_MASTER_KEY": "x" * 10}
    )
    assert bad.returncode == 1
    assert "GUESTCOMMS_MASTER_KEY" in bad.stderr


async def test_change_master_key(db_url: str) -> None:
    """`keys change-master-key` refuses a malformed new key in one line; with a good one the
    API reads the contacts under the new key, and the old key is refused, naming the cause."""
    old = (await asyncio.to_thread(run_cli, "keys", "master-key", env={})).stdout.strip()
    new = (await asyncio.to_thread(run_cli, "keys", "master-key", env={})).stdout.strip()
    env = {"GUESTCOMMS_DATABASE_URL": db_url, "GUESTCOMMS_MASTER_KEY": old}
    created = await asyncio.to_thread(run_cli, "keys", "create", "--org", "Ana", env=env)
    key = created.stdout.strip()
    async with running_app(make_settings(db_url, master_key=old)) as api, api.as_key(key) as c:
        response = await c.post("/v1/contacts", json={"email": "rewrapped@cli.example"})
        assert response.status_code == 201, response.text
        contact = response.json()["id"]
    malformed = await asyncio.to_thread(
        run_cli, "keys", "change-master-key", env={**env, "GUESTCOMMS_NEW_MASTER_KEY": "nope"}
    )
    assert malformed.returncode == 1
    assert malformed.stderr.strip().count("\n") == 0
    assert "the new master key must decode to 32 bytes" in malformed.stderr
    changed = await asyncio.to_thread(
        run_cli, "keys", "change-master-key", env={**env, "GUESTCOMMS_NEW_MASTER_KEY": new}
    )
    assert changed.returncode == 0, changed.stderr
    assert "1 data key(s) (k1) now wrapped under the new master key" in changed.stdout
    async with running_app(make_settings(db_url, master_key=new)) as api, api.as_key(key) as c:
        assert (await c.get(f"/v1/contacts/{contact}")).json()["email"] == "rewrapped@cli.example"
    stale = await asyncio.to_thread(run_cli, "keys", "rotate-data-key", "--settle", "0", env=env)
    assert stale.returncode == 1
    assert "is not the key it was made with" in stale.stderr
