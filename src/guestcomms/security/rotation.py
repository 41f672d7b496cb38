"""Data key rotation: a new active key, then every encrypted value re-encrypted under it, in
batches, while the service keeps running.

1. A new data key becomes active and the old one retired, in one transaction (two rotations at
   once collide on the key id). Retired keys are kept: they still decrypt, so readers never
   fail, and backups taken earlier stay readable with the same master key.
2. Wait ``settle_seconds`` (the ``data_key_refresh_seconds`` of the other processes, plus a
   margin), by which time every busy process encrypts new values with the new key.
3. Walk every table that has encrypted columns (found from the models: every column typed
   ``EncryptedText`` or ``EncryptedJSON``) in primary-key order, ``batch_size`` rows per
   transaction: decrypt what an older key (or no key: a plaintext written before encryption
   was switched on) protects and write it back under the new key. Each update is conditional
   on the stored value being unchanged, so a row the service rewrote meanwhile is never
   overwritten with a stale value: the next pass sees it.
4. Repeat until a pass changes nothing.

A rotation that stops half-way (a crash, Ctrl-C) leaves a readable database; running it again
makes another new key and finishes the job.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Table, Text, bindparam, cast, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from guestcomms.db.base import Base
from guestcomms.db.encrypted import EncryptedJSON, EncryptedText
from guestcomms.db.engine import create_session_factory
from guestcomms.security.encryption import EncryptionError, KeyRing, is_ciphertext, key_id_of
from guestcomms.security.key_ring import add_active_key
from guestcomms.security.protection import protection_for

MAX_PASSES = 10  # each pass only meets rows written during the previous one


@dataclass
class RotationReport:
    """What a rotation did: the new key, and the rows re-encrypted per table."""

    key_id: str
    passes: int = 0
    reencrypted: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def total(self) -> int:
        """Rows re-encrypted in all."""
        return sum(self.reencrypted.values())


Progress = Callable[[str, int], None]  # (table name, rows just scanned)


def encrypted_tables() -> dict[Table, list[Column[Any]]]:
    """Every table with encrypted columns, and those columns (from the models)."""
    found: dict[Table, list[Column[Any]]] = {}
    for table in Base.metadata.sorted_tables:
        columns = [c for c in table.columns if isinstance(c.type, EncryptedText | EncryptedJSON)]
        if columns:
            found[table] = columns
    return found


async def rows_to_scan(engine: AsyncEngine) -> int:
    """How many rows a pass reads (for a progress bar)."""
    async with engine.connect() as conn:
        total = 0
        for table in encrypted_tables():
            total += int(await conn.scalar(select(func.count()).select_from(table)) or 0)
        return total


async def rotate_data_key(
    engine: AsyncEngine,
    *,
    settle_seconds: float,
    batch_size: int = 500,
    pause_seconds: float = 0.0,
    progress: Progress | None = None,
) -> RotationReport:
    """Rotate the data key of ``engine``'s database (see the module docstring), pausing
    ``pause_seconds`` between batches: on SQLite every transaction takes the one write lock,
    and back-to-back batches would keep the service's own requests waiting."""
    keys = protection_for(engine.sync_engine.dialect).keys
    if keys is None:
        raise EncryptionError("encryption at rest is off: set GUESTCOMMS_MASTER_KEY first")
    sessions = create_session_factory(engine)
    await keys.reload_async()  # creates the first key if this database never had one
    async with sessions() as session, session.begin():
        report = RotationReport(key_id=await add_active_key(session, keys.master))
    await keys.reload_async()
    await asyncio.sleep(settle_seconds)
    for _ in range(MAX_PASSES):
        report.passes += 1
        ring = await keys.reload_async()
        changed = 0
        for table, columns in encrypted_tables().items():
            count = await _reencrypt_table(
                engine,
                table,
                columns,
                ring,
                batch_size=batch_size,
                pause_seconds=pause_seconds,
                progress=progress,
            )
            report.reencrypted[table.name] += count
            changed += count
        if changed == 0:
            return report
    raise EncryptionError(
        f"values were still being written under an old key after {MAX_PASSES} passes; "
        "run the rotation again"
    )


async def _reencrypt_table(
    engine: AsyncEngine,
    table: Table,
    columns: Sequence[Column[Any]],
    ring: KeyRing,
    *,
    batch_size: int,
    pause_seconds: float,
    progress: Progress | None,
) -> int:
    raw = [cast(c, Text).label(c.name) for c in columns]
    changed = 0
    after: Any = None
    while True:
        query = select(table.c.id, *raw).order_by(table.c.id).limit(batch_size)
        if after is not None:
            query = query.where(table.c.id > after)
        async with engine.begin() as conn:
            rows = (await conn.execute(query)).all()
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
            for row in rows:
                params: dict[str, Any] = {"b_id": row.id}
                for column in columns:
                    stored = getattr(row, column.name)
                    fresh = _reencrypted(stored, column, ring)
                    if fresh is not None:
                        params[f"b_old_{column.name}"] = stored
                        params[f"b_new_{column.name}"] = fresh
                names = tuple(c.name for c in columns if f"b_new_{c.name}" in params)
                if names:
                    groups[names].append(params)
            for names, batch in groups.items():
                stmt = (
                    update(table)
                    .where(
                        table.c.id == bindparam("b_id"),
                        *(cast(table.c[n], Text) == bindparam(f"b_old_{n}") for n in names),
                    )
                    .values(
                        {
                            n: bindparam(
                                f"b_new_{n}", type_=_encrypted_type(table.c[n]).impl_instance
                            )
                            for n in names
                        }
                    )
                )
                await conn.execute(stmt, batch)
                changed += len(batch)
        if progress is not None:
            progress(table.name, len(rows))
        if len(rows) < batch_size:
            return changed
        after = rows[-1].id
        await asyncio.sleep(pause_seconds)


def _reencrypted(stored: str | None, column: Column[Any], ring: KeyRing) -> Any:
    """The value to store instead of ``stored`` (the column's raw text), or None to keep it."""
    if stored is None:
        return None
    kind = _encrypted_type(column)
    context = kind.context
    if isinstance(kind, EncryptedJSON):
        value = json.loads(stored)
        if value is None:
            return None
        plaintext = (
            _plaintext(value, context, ring)
            if is_ciphertext(value)
            else json.dumps(value, separators=(",", ":"))
        )
    else:
        plaintext = _plaintext(stored, context, ring) if is_ciphertext(stored) else stored
    if plaintext is None:
        return None
    return ring.encrypt(plaintext, context)


def _encrypted_type(column: Column[Any]) -> EncryptedText | EncryptedJSON:
    kind = column.type
    if not isinstance(kind, EncryptedText | EncryptedJSON):
        raise TypeError(f"{column} is not an encrypted column")
    return kind


def _plaintext(token: str, context: str, ring: KeyRing) -> str | None:
    # None: already under the active key
    if key_id_of(token) == ring.active:
        return None
    return ring.decrypt(token, context)
