"""Encryption at rest: with a master key no contact's email or phone is stored in plaintext
anywhere (every table read with plain SQL, and the SQLite file's bytes), reads through the API
still return them, audience filters that would need the plaintext are refused, and a data key
rotation re-encrypts every value while reads keep working."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Text, cast, select, text
from sqlalchemy.engine import make_url

from guestcomms.db.engine import create_engine, create_session_factory, engine_for
from guestcomms.security.encryption import (
    EncryptionError,
    encode_key,
    is_ciphertext,
    key_id_of,
    new_key,
)
from guestcomms.security.key_ring import fetch_ring
from guestcomms.security.master_change import change_master_key
from guestcomms.security.models import DataKey
from guestcomms.security.rotation import encrypted_tables, rotate_data_key
from tests.integration.test_privacy import ZELDA, Setup, org_setup, raw_dump, seed_zelda
from tests.support import create_contact

GUESTS = [
    {
        "email": f"guest{i}.encrypted@wedding-secret.example",
        "phone": f"+4479110{i:05d}",
        "first_name": f"Firstname{i}",
    }
    for i in range(40)
]
REFRESH = 0.2  # seconds a process may keep encrypting with a key after a rotation


def encrypted(**more: Any) -> dict[str, Any]:
    """Settings that switch encryption at rest on with a fresh master key."""
    return {"master_key": encode_key(new_key()), "data_key_refresh_seconds": REFRESH, **more}


def addresses() -> list[str]:
    """Every email and phone number the tests store."""
    return [
        ZELDA["email"],
        ZELDA["phone"],
        "one.more.encrypted@wedding-secret.example",
        "+447911099999",
    ] + [g[k] for g in GUESTS for k in ("email", "phone")]


async def seed(setup: Setup) -> str:
    """Zelda with her history (tests.integration.test_privacy.seed_zelda), 40 guests through
    the bulk import, and one more contact through the API."""
    zelda = await seed_zelda(setup)
    response = await setup.client.post("/v1/contacts/import", json=GUESTS)
    assert response.status_code == 200, response.text
    response = await setup.client.post(
        "/v1/contacts",
        json={"email": "one.more.encrypted@wedding-secret.example", "phone": "+447911099999"},
    )
    assert response.status_code == 201, response.text
    return zelda


async def stored_ciphertexts(setup: Setup) -> list[tuple[str, str, Any]]:
    """(table, column, raw stored value) of every non-null value of every encrypted column."""
    found: list[tuple[str, str, Any]] = []
    async with setup.sessions() as session:
        for table, columns in encrypted_tables().items():
            for column in columns:
                rows = await session.execute(select(cast(column, Text)).where(column.is_not(None)))
                for (raw,) in rows:
                    value = (
                        json.loads(raw)
                        if column.type.__class__.__name__ == "EncryptedJSON"
                        else raw
                    )
                    if value is not None:
                        found.append((table.name, column.name, value))
    return found


def sqlite_file_bytes(database_url: str) -> bytes:
    """The SQLite database file and its write-ahead log, as stored on disk."""
    path = Path(make_url(database_url).database or "")
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


async def test_with_encryption_on_no_address_is_stored_in_plaintext(database_url: str) -> None:
    """Emails and phones of every contact (API, import, suppressions, outbox, inbound,
    consent proof, per-recipient variables) are absent from every raw table, and the SQLite file;
    the API still reads them back."""
    async with org_setup(database_url, **encrypted()) as setup:
        zelda = await seed(setup)
        dump = (await raw_dump(setup)).lower()
        assert [a for a in addresses() if a.lower() in dump] == []
        assert ZELDA["first_name"].lower() not in dump
        assert "$gc1$k1$" in dump  # the values are there, encrypted, naming their key
        # reads through the API decrypt
        contact = (await setup.client.get(f"/v1/contacts/{zelda}")).json()
        assert (contact["email"], contact["phone"]) == (ZELDA["email"], ZELDA["phone"])
        assert contact["attributes"] == ZELDA["attributes"]
        listed = (await setup.client.get("/v1/contacts?limit=100")).json()["items"]
        assert {g["email"] for g in GUESTS} <= {c["email"] for c in listed}
        # look-ups by address use the keyed hash: a re-import updates, never duplicates
        again = await setup.client.post(
            "/v1/contacts/import", json=[{**GUESTS[0], "first_name": "Renamed"}]
        )
        assert again.status_code == 200, again.text
        listed = (await setup.client.get("/v1/contacts?limit=100")).json()["items"]
        renamed = [c for c in listed if c["email"] == GUESTS[0]["email"]]
        assert [c["first_name"] for c in renamed] == ["Renamed"]
        # the suppression of Zelda's email still blocks her (found by hash)
        suppressions = (await setup.client.get("/v1/suppressions")).json()["items"]
        assert ZELDA["email"] in {s["address"] for s in suppressions}
        taken = await setup.client.post("/v1/contacts", json={"email": GUESTS[2]["email"]})
        assert taken.status_code == 409, taken.text
    if database_url.startswith("sqlite"):
        raw = sqlite_file_bytes(database_url).lower()
        assert raw  # the scan reads the real file
        assert [a for a in addresses() if a.lower().encode() in raw] == []


async def test_a_filter_on_an_encrypted_field_is_refused(database_url: str) -> None:
    """A filter that would compare a ciphertext selects no one silently: it is a 422 naming
    the field and its position; filters on plaintext fields still work."""
    async with org_setup(database_url, **encrypted()) as setup:
        await create_contact(setup.client, email="tagged@wedding-secret.example", tags=["vip"])
        for query in (
            'email = "tagged@wedding-secret.example"',
            'tags has "vip" and attributes.x = 1',
        ):
            response = await setup.client.post("/v1/audiences/preview", json={"filter": query})
            assert response.status_code == 422, response.text
            problem = response.json()
            assert "encrypted at rest" in problem["detail"]
            assert problem["position"] == query.index("email" if "email" in query else "attributes")
        response = await setup.client.post(
            "/v1/audiences/preview", json={"filter": 'tags has "vip"'}
        )
        assert response.status_code == 200, response.text
        assert response.json()["count"] == 1


async def test_rotation_reencrypts_every_value_while_reads_keep_working(
    database_url: str,
) -> None:
    """``rotate_data_key`` on its own engine (as the CLI runs it, beside the server) makes
    k2 active and re-encrypts every value, batch by batch, while the API keeps reading and
    writing contacts; afterwards every stored value names k2 and everything reads back."""
    async with org_setup(database_url, **encrypted()) as setup:
        zelda = await seed(setup)
        before = await stored_ciphertexts(setup)
        assert before
        assert {key_id_of(v) for _, _, v in before} == {"k1"}
        expected = {g["email"]: g["phone"] for g in GUESTS}
        rotating = engine_for(setup.settings)  # another "process": its own key ring
        reads, checkpoints, done = 0, [], asyncio.Event()
        written: list[str] = []

        async def keep_using_the_api() -> None:
            nonlocal reads
            while not done.is_set():
                listed = (await setup.client.get("/v1/contacts?limit=100")).json()["items"]
                got = {c["email"]: c["phone"] for c in listed if c["email"] in expected}
                assert got == expected
                one = (await setup.client.get(f"/v1/contacts/{zelda}")).json()
                assert one["email"] == ZELDA["email"]
                reads += 1
                if reads % 5 == 0:
                    written.append(
                        await create_contact(
                            setup.client,
                            email=f"during{reads}@wedding-secret.example",
                            phone=f"+4479112{reads:05d}",
                        )
                    )
                await asyncio.sleep(0)

        async def rotate() -> None:
            try:
                report = await rotate_data_key(
                    rotating,
                    settle_seconds=REFRESH * 2,
                    batch_size=7,
                    pause_seconds=0.05,  # as the CLI does: the service's requests get in
                    progress=lambda _table, _rows: checkpoints.append(reads),
                )
                assert report.key_id == "k2"
                assert report.reencrypted["contacts"] >= len(GUESTS) + 2
            finally:
                done.set()

        try:
            await asyncio.gather(keep_using_the_api(), rotate())
        finally:
            await rotating.dispose()
        # the API kept reading between the rotation's batches
        assert checkpoints[-1] > checkpoints[0]
        assert written
        after = await stored_ciphertexts(setup)
        assert [v for _, _, v in after if not is_ciphertext(v)] == []
        assert {key_id_of(v) for _, _, v in after} == {"k2"}
        assert len(after) >= len(before)
        async with setup.sessions() as session:
            states = dict((await session.execute(select(DataKey.key_id, DataKey.state))).all())
        assert states == {"k1": "retired", "k2": "active"}
        for contact in written:
            assert (await setup.client.get(f"/v1/contacts/{contact}")).status_code == 200
        export = await setup.client.get(f"/v1/contacts/{zelda}/export")
        assert export.json()["contact"]["phone"] == ZELDA["phone"]


async def test_switching_encryption_on_later_encrypts_the_plaintext_rows(
    database_url: str,
) -> None:
    """Rows written before a master key was set are read as plaintext, and a rotation
    encrypts them all; the contacts still read back (and are still found by email)."""
    async with org_setup(database_url) as plain:
        await seed(plain)
        assert ZELDA["email"] in await raw_dump(plain)
    async with org_setup(database_url, template_name="again", **encrypted()) as setup:
        assert ZELDA["email"] in await raw_dump(setup)
        rotating = engine_for(setup.settings)
        try:
            await rotate_data_key(rotating, settle_seconds=0, batch_size=50)
        finally:
            await rotating.dispose()
        dump = (await raw_dump(setup)).lower()
        assert [a for a in addresses() if a.lower() in dump] == []
        async with setup.sessions() as session:
            count = await session.scalar(text("SELECT count(*) FROM contacts"))
        listed = (await setup.client.get("/v1/contacts?limit=100")).json()["items"]
        assert len(listed) == count
        assert {g["email"] for g in GUESTS} <= {c["email"] for c in listed}
        again = await setup.client.post("/v1/contacts/import", json=[GUESTS[1]])
        assert again.json()["created"] == 0


async def _rewrap(database_url: str, old: bytes, new: bytes) -> list[str]:
    """``change_master_key`` in one committed transaction of its own, as the CLI runs it."""
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            return await change_master_key(session, old, new)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("rotated", [False, True], ids=["k1-only", "after-a-rotation"])
async def test_changing_the_master_key_rewraps_the_keys_and_rewrites_no_value(
    database_url: str, rotated: bool
) -> None:
    """After ``change_master_key`` a process with the new master key reads every value, and
    no stored value changed; the old key is then told it does not unwrap. A wrong current
    key (though any key derives *a* k1), or the same key again, changes nothing. A rotation
    afterwards works under the new key."""
    async with org_setup(database_url, **encrypted()) as setup:
        zelda = await seed(setup)
        if rotated:
            rotating = engine_for(setup.settings)
            try:
                await rotate_data_key(rotating, settle_seconds=0, batch_size=50)
            finally:
                await rotating.dispose()
        before = await stored_ciphertexts(setup)
        old = setup.settings.master_key_bytes
    assert old is not None
    new = new_key()
    with pytest.raises(EncryptionError, match="is not the key it was made with"):
        await _rewrap(database_url, new_key(), new)
    with pytest.raises(ValueError, match="current one"):
        await _rewrap(database_url, old, old)
    assert await _rewrap(database_url, old, new) == (["k1", "k2"] if rotated else ["k1"])
    with pytest.raises(EncryptionError, match="does not unwrap"):
        await fetch_ring(database_url, old)
    settings = {"master_key": encode_key(new), "data_key_refresh_seconds": REFRESH}
    async with org_setup(database_url, template_name="after", **settings) as after:
        assert await stored_ciphertexts(after) == before
        export = await after.client.get(f"/v1/contacts/{zelda}/export")
        assert export.json()["contact"]["phone"] == ZELDA["phone"]
        listed = (await after.client.get("/v1/contacts?limit=100")).json()["items"]
        assert {g["email"] for g in GUESTS} <= {c["email"] for c in listed}
        rotating = engine_for(after.settings)
        try:
            report = await rotate_data_key(rotating, settle_seconds=0, batch_size=50)
        finally:
            await rotating.dispose()
        assert report.key_id == ("k3" if rotated else "k2")
        again = (await after.client.get("/v1/contacts?limit=100")).json()["items"]
        assert sorted(c["email"] for c in again) == sorted(c["email"] for c in listed)
        assert {key_id_of(v) for _, _, v in await stored_ciphertexts(after)} == {report.key_id}
