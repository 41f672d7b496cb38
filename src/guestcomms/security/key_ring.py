"""Loading the data keys into a process, and keeping them current while keys rotate.

The column types that encrypt (``db.encrypted``) run inside SQLAlchemy's synchronous bind and
result processing, where no ``await`` is possible. So a :class:`KeyRingSource` loads the keys
on a short-lived connection of its own, in a helper thread with its own event loop, and hands
the column types a plain :class:`~guestcomms.security.encryption.KeyRing`:

- the first use loads the ring (blocking, once; reads only);
- a ring older than ``refresh_seconds`` is refreshed in the background when next used to
  encrypt, so within about that time of a rotation every busy process encrypts with the new
  key (``keys rotate-data-key`` waits that long before re-encrypting, and then re-encrypts
  until a pass finds nothing left on an old key);
- a ciphertext naming a key the ring does not know yet (written by a process that already
  rotated) reloads the ring at once, blocking, so reads keep working during a rotation.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from guestcomms.domain.clock import utc_now
from guestcomms.security.encryption import (
    EncryptionError,
    KeyRing,
    derive_key,
    new_key,
    unwrap_key,
    wrap_key,
)
from guestcomms.security.models import DataKey

log = structlog.get_logger("guestcomms.keys")

ACTIVE = "active"
RETIRED = "retired"
# the first data key is derived from the master key, not stored: a database gets encrypted
# values without any write to create a key (a write here could wait on the very transaction
# that is encrypting); rotations add random keys, stored wrapped; a change of master key
# (``rewrap_keys``) stores k1 wrapped too, since the new master key does not derive it
FIRST_KEY_ID = "k1"


def key_number(key_id: str) -> int:
    """The number in a key id ("k12" -> 12)."""
    return int(key_id.removeprefix("k"))


async def read_ring(session: AsyncSession, master: bytes) -> KeyRing:
    """Every data key: ``k1`` (derived from the master key) and those stored, unwrapped."""
    rows = (await session.scalars(select(DataKey))).all()
    keys = {FIRST_KEY_ID: derive_key(master, FIRST_KEY_ID)}
    keys.update(
        {row.key_id: unwrap_key(master, row.key_id, row.wrapped) for row in rows if row.wrapped}
    )
    active = [row.key_id for row in rows if row.state == ACTIVE]
    # two active keys only if a rotation died between its two updates: the newer one wins
    return KeyRing(keys=keys, active=max(active, key=key_number, default=FIRST_KEY_ID))


async def add_active_key(session: AsyncSession, master: bytes) -> str:
    """Make a new data key the active one and retire the others (flushed, not committed).

    Its id is one past the highest, so two rotations at once collide on the unique key id
    (``IntegrityError``) instead of both succeeding."""
    existing = (await session.scalars(select(DataKey.key_id))).all()
    now = utc_now()
    if not existing:  # k1 has no row until now: record that it is retired
        session.add(DataKey(key_id=FIRST_KEY_ID, wrapped="", state=RETIRED, retired_at=now))
    key_id = f"k{max((key_number(k) for k in existing), default=1) + 1}"
    for row in (await session.scalars(select(DataKey).where(DataKey.state == ACTIVE))).all():
        row.state = RETIRED
        row.retired_at = now
    session.add(DataKey(key_id=key_id, wrapped=wrap_key(master, key_id, new_key()), state=ACTIVE))
    await session.flush()
    return key_id


async def rewrap_keys(session: AsyncSession, old: bytes, new: bytes) -> list[str]:
    """Wrap every data key under the master key ``new`` instead of ``old`` (flushed, not
    committed); return their ids. No encrypted value changes: the data keys stay the same.

    ``k1``, derived from ``old`` until now, is stored wrapped like the others (``read_ring``
    prefers a stored key to the derived one), so nothing depends on ``old`` any more. Raises
    ``EncryptionError`` if ``old`` does not unwrap the stored keys, and ``ValueError`` if
    ``new`` is ``old``. A *derived* ``k1`` cannot tell a wrong ``old``: call
    ``security.master_change.change_master_key``, which checks it first. Before returning
    it reads the ring back under ``new`` and checks it is the same."""
    if new == old:
        raise ValueError("the new master key is the current one")
    stmt = select(DataKey)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()  # a second change at once waits, then fails to unwrap
    rows = {row.key_id: row for row in (await session.scalars(stmt)).all()}
    ring = await read_ring(session, old)
    for key_id, key in ring.keys.items():
        row = rows.get(key_id)
        if row is None:  # k1 before any rotation: the active key, never stored
            session.add(DataKey(key_id=key_id, wrapped=wrap_key(new, key_id, key), state=ACTIVE))
        else:
            row.wrapped = wrap_key(new, key_id, key)
    await session.flush()
    again = await read_ring(session, new)
    if dict(again.keys) != dict(ring.keys) or again.active != ring.active:
        raise EncryptionError("the re-wrapped keys do not read back the same; nothing changed")
    return sorted(ring.keys, key=key_number)


async def fetch_ring(database_url: str, master: bytes) -> KeyRing:
    """Load the ring on a connection of its own (read-only: it never waits for a writer,
    which may be the very transaction that needs the keys)."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with AsyncSession(engine) as session:
            return await read_ring(session, master)
    finally:
        await engine.dispose()


def _run_in_thread(coroutine: Coroutine[Any, Any, KeyRing]) -> KeyRing:
    # asyncio.run refuses to nest inside a running loop: give it a thread of its own
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["ring"] = asyncio.run(coroutine)
        except BaseException as e:  # handed to the caller below
            box["error"] = e

    thread = threading.Thread(target=target, name="guestcomms-key-ring", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    ring: KeyRing = box["ring"]
    return ring


class KeyRingSource:
    """One process's view of the data keys of one database (see the module docstring)."""

    def __init__(self, database_url: str, master: bytes, *, refresh_seconds: float) -> None:
        self._url = database_url
        self._master = master
        self._refresh_seconds = refresh_seconds
        self._ring: KeyRing | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()
        self._refreshing = False

    @property
    def master(self) -> bytes:
        """The master key the data keys are wrapped with."""
        return self._master

    def for_encrypt(self) -> KeyRing:
        """The ring to encrypt with (loading it on first use; refreshing it when stale)."""
        ring = self._ring
        if ring is None:
            return self.reload()
        if time.monotonic() - self._loaded_at > self._refresh_seconds:
            self._refresh_in_background()
        return ring

    def for_decrypt(self, key_id: str) -> KeyRing:
        """A ring that knows ``key_id``, reloading once if this one does not."""
        ring = self._ring
        if ring is not None and key_id in ring.keys:
            return ring
        ring = self.reload()
        if key_id not in ring.keys:
            raise EncryptionError(f"unknown data key {key_id}: it is not in this database")
        return ring

    def reload(self) -> KeyRing:
        """Load the keys now, blocking the caller."""
        return self._install(_run_in_thread(fetch_ring(self._url, self._master)))

    async def reload_async(self) -> KeyRing:
        """Load the keys now, from a coroutine."""
        return self._install(await fetch_ring(self._url, self._master))

    def _install(self, ring: KeyRing) -> KeyRing:
        with self._lock:
            self._ring = ring
            self._loaded_at = time.monotonic()
        return ring

    def _refresh_in_background(self) -> None:
        with self._lock:
            if self._refreshing:
                return
            self._refreshing = True

        def target() -> None:
            try:
                self._install(asyncio.run(fetch_ring(self._url, self._master)))
            except Exception as e:  # the current ring stays; the next use retries
                log.warning("key_ring_refresh_failed", error=f"{type(e).__name__}: {e}")
            finally:
                self._refreshing = False

        threading.Thread(target=target, name="guestcomms-key-refresh", daemon=True).start()
