"""The audit log: every change through the API or the CLI appends a hash-chained entry in the
same transaction, and `guestcomms audit verify` names an entry that was altered or removed."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from guestcomms.audit.models import AuditEntry
from guestcomms.audit.repository import verify_chains
from guestcomms.cli import app as cli_app
from guestcomms.db.engine import create_engine, create_session_factory
from tests.support import create_contact, create_key, make_settings, running_app


async def _entries(database_url: str) -> list[AuditEntry]:
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session:
            rows = await session.scalars(
                select(AuditEntry).order_by(AuditEntry.chain, AuditEntry.seq)
            )
            return list(rows.all())
    finally:
        await engine.dispose()


async def _verify(database_url: str) -> tuple[int, list[Any]]:
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session:
            return await verify_chains(session)
    finally:
        await engine.dispose()


async def _tamper(database_url: str, statement: Any) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(statement)
    finally:
        await engine.dispose()


async def _three_changes(database_url: str) -> str:
    """Create, change and delete a contact through the API; return the key's prefix."""
    key = await create_key(database_url, "Ana & Ben")
    async with running_app(make_settings(database_url)) as api, api.as_key(key) as client:
        contact_id = await create_contact(client, email="guest@example.com", first_name="Ana")
        response = await client.patch(f"/v1/contacts/{contact_id}", json={"last_name": "Smith"})
        assert response.status_code == 200, response.text
        response = await client.delete(f"/v1/contacts/{contact_id}")
        assert response.status_code == 204
    return key.split("_")[1]


async def test_api_changes_append_chained_entries(database_url: str) -> None:
    """A POST, a PATCH and a DELETE each append one entry naming the caller's key, the route,
    the resource, the changed fields (no values) and the client address, chained by hash."""
    prefix = await _three_changes(database_url)
    entries = await _entries(database_url)
    assert [e.seq for e in entries] == [1, 2, 3]
    assert [e.action for e in entries] == [
        "POST /v1/contacts",
        "PATCH /v1/contacts/{contact_id}",
        "DELETE /v1/contacts/{contact_id}",
    ]
    assert {e.actor for e in entries} == {f"key:{prefix}"}
    assert {e.source for e in entries} == {"127.0.0.1"}
    target = entries[0].target
    assert target is not None
    assert target.startswith("ct_")
    assert [e.target for e in entries] == [target] * 3
    assert entries[0].detail == {"fields": ["email", "first_name"]}
    assert entries[1].detail == {"fields": ["last_name"]}
    assert "guest@example.com" not in json.dumps([e.detail for e in entries])
    assert entries[0].prev_hash == ""
    assert [e.prev_hash for e in entries[1:]] == [e.hash for e in entries[:-1]]
    assert len({e.organization_id for e in entries}) == 1
    assert await _verify(database_url) == (3, [])


async def test_a_failed_request_leaves_no_entry(database_url: str) -> None:
    """A change rolled back (a 409 raised inside the transaction, a 422 before it) and a read
    leave no entry."""
    key = await create_key(database_url, "Ana & Ben")
    async with running_app(make_settings(database_url)) as api, api.as_key(key) as client:
        await create_contact(client, email="guest@example.com")
        response = await client.post("/v1/contacts", json={"email": "guest@example.com"})
        assert response.status_code == 409, response.text
        response = await client.post("/v1/contacts", json={"email": "not an address"})
        assert response.status_code == 422
        assert (await client.get("/v1/contacts")).status_code == 200
    assert [e.seq for e in await _entries(database_url)] == [1]


async def test_verify_names_an_altered_entry(database_url: str) -> None:
    """Editing one entry's detail in the database makes verify fail naming that entry."""
    await _three_changes(database_url)
    second = (await _entries(database_url))[1]
    await _tamper(
        database_url,
        update(AuditEntry).where(AuditEntry.id == second.id).values(detail={"fields": []}),
    )
    _, problems = await _verify(database_url)
    assert [(p.kind, p.entry_id, p.seq) for p in problems] == [("altered", second.id, 2)]
    assert str(second.id) in problems[0].describe()


async def test_verify_names_the_gap_of_a_deleted_entry(database_url: str) -> None:
    """Deleting a middle entry makes verify fail at the entry after the gap; deleting the
    newest makes it fail at the chain's end (the head remembers how long the chain was)."""
    await _three_changes(database_url)
    entries = await _entries(database_url)
    await _tamper(database_url, delete(AuditEntry).where(AuditEntry.id == entries[2].id))
    _, problems = await _verify(database_url)
    assert [(p.kind, p.seq) for p in problems] == [("truncated", 2)]
    await _tamper(database_url, delete(AuditEntry).where(AuditEntry.id == entries[0].id))
    _, problems = await _verify(database_url)
    assert [(p.kind, p.entry_id, p.seq) for p in problems] == [("missing", entries[1].id, 2)]
    assert "missing before seq 2" in problems[0].describe()


async def test_concurrent_changes_make_one_unbroken_chain(database_url: str) -> None:
    """Parallel POSTs of one organization never fork its chain: seq 1..N, every link holds."""
    key = await create_key(database_url, "Ana & Ben")
    count = 20
    async with running_app(make_settings(database_url)) as api, api.as_key(key) as client:
        await asyncio.gather(
            *(create_contact(client, email=f"g{i}@example.com") for i in range(count))
        )
    entries = await _entries(database_url)
    assert [e.seq for e in entries] == list(range(1, count + 1))
    assert len({e.target for e in entries}) == count
    assert await _verify(database_url) == (count, [])


async def test_each_organization_has_its_own_chain(database_url: str) -> None:
    """Two organizations' changes form two chains, each starting at seq 1."""
    keys = [await create_key(database_url, name) for name in ("Ana & Ben", "Cleo & Dan")]
    async with running_app(make_settings(database_url)) as api:
        for key in keys:
            async with api.as_key(key) as client:
                await create_contact(client, email="guest@example.com")
    entries = await _entries(database_url)
    assert sorted(e.seq for e in entries) == [1, 1]
    assert len({e.chain for e in entries}) == 2
    assert await _verify(database_url) == (2, [])


def _cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    for name in [k for k in os.environ if k.startswith("GUESTCOMMS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GUESTCOMMS_DATABASE_URL", database_url)
    monkeypatch.setenv("GUESTCOMMS_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("COLUMNS", "200")
    # in-process, logging set-up would bind loggers to the runner's soon-closed stderr
    monkeypatch.setattr("guestcomms.commands.support.configure_logging", lambda **_: None)


def test_cli_changes_are_recorded_and_verify_names_an_altered_entry(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`keys create` appends an entry with actor cli:<user>; `audit verify` passes on the
    untouched log and exits 1 naming the entry once its row is edited."""
    _cli_env(monkeypatch, sqlite_url)
    runner = CliRunner()
    for org in ("Ana & Ben", "Ana & Ben", "Cleo & Dan"):
        result = runner.invoke(cli_app, ["keys", "create", "--org", org])
        assert result.exit_code == 0, result.output
    result = runner.invoke(cli_app, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "audit log OK: 3 entries verified" in result.stdout
    result = runner.invoke(cli_app, ["audit", "verify", "--org", "Ana & Ben"])
    assert "audit log OK: 2 entries verified" in result.stdout

    entries = asyncio.run(_entries(sqlite_url))
    assert {e.action for e in entries} == {"keys.create"}
    assert all(e.actor.startswith("cli") and e.source == "cli" for e in entries)
    assert all(e.target and e.target.startswith("key_") for e in entries)
    victim = next(e for e in entries if e.seq == 2)
    path = sqlite_url.removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(path) as connection:
        connection.execute(
            "UPDATE audit_entries SET actor = 'key:someone' WHERE id = ?", (victim.id.hex,)
        )
    result = runner.invoke(cli_app, ["audit", "verify"])
    assert result.exit_code == 1
    assert f"entry {victim.id} (seq 2) was altered" in result.stderr


async def test_the_audit_log_is_listed_to_admin_keys_only(database_url: str) -> None:
    """GET /v1/audit pages through the organization's entries in order, without their hashes;
    a key without the admin scope gets 403."""
    prefix = await _three_changes(database_url)
    reader = await create_key(database_url, "Ana & Ben", scopes=("contacts:read",))
    async with running_app(make_settings(database_url)) as api:
        async with api.as_key(reader) as client:
            refused = await client.get("/v1/audit")
        admin = await create_key(database_url, "Ana & Ben")
        async with api.as_key(admin) as client:
            first = (await client.get("/v1/audit", params={"limit": 2})).json()
            rest = await client.get("/v1/audit", params={"after": first["next_cursor"]})
    assert refused.status_code == 403
    items = first["items"] + rest.json()["items"]
    assert [e["seq"] for e in items] == [1, 2, 3]
    assert rest.json()["next_cursor"] is None
    assert items[0]["actor"] == f"key:{prefix}"
    assert items[0]["action"] == "POST /v1/contacts"
    assert items[0]["id"].startswith("adt_")
    assert not [name for item in items for name in item if "hash" in name]
