"""Changing the master key: every data key wrapped under the new one, once the current one
is known to be right (``guestcomms keys change-master-key``; docs/operations.md).

A stored data key proves the current master key by unwrapping (AES-GCM refuses another key).
The first data key, ``k1``, is derived from the master key rather than stored, so any key
derives *a* ``k1``: here a value encrypted under ``k1`` is decrypted first, and a wrong key
is refused before anything is written, where re-wrapping a wrongly derived ``k1`` would make
every value under it unreadable for good. No encrypted value is rewritten.
"""

from __future__ import annotations

import json

from sqlalchemy import Text, cast, select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.db.encrypted import EncryptedJSON, EncryptedText
from guestcomms.security.encryption import PREFIX, EncryptionError, KeyRing
from guestcomms.security.key_ring import FIRST_KEY_ID, read_ring, rewrap_keys
from guestcomms.security.models import DataKey
from guestcomms.security.rotation import encrypted_tables


async def change_master_key(session: AsyncSession, old: bytes, new: bytes) -> list[str]:
    """Wrap every data key under ``new`` instead of ``old`` (flushed, not committed); return
    their ids. ``EncryptionError`` if ``old`` is not the current master key, ``ValueError``
    if ``new`` is ``old``."""
    ring = await read_ring(session, old)  # the stored keys check ``old`` as they unwrap
    stored_first = await session.scalar(
        select(DataKey.wrapped).where(DataKey.key_id == FIRST_KEY_ID)
    )
    if not stored_first:  # derived from ``old``: only a value under it can tell
        await _check_derived_first_key(session, ring)
    return await rewrap_keys(session, old, new)


def _encrypted_type(kind: object) -> EncryptedText | EncryptedJSON:
    """An encrypted column's type (``encrypted_tables`` lists only those)."""
    if not isinstance(kind, EncryptedText | EncryptedJSON):
        raise TypeError(f"not an encrypted column type: {kind!r}")
    return kind


async def _check_derived_first_key(session: AsyncSession, ring: KeyRing) -> None:
    """Decrypt one value under ``k1``, if any is stored; raise if it does not decrypt."""
    marker = f"%{PREFIX}{FIRST_KEY_ID}$%"
    for columns in encrypted_tables().values():
        for column in columns:
            raw = await session.scalar(
                select(cast(column, Text)).where(cast(column, Text).like(marker)).limit(1)
            )
            if raw is None:
                continue
            kind = _encrypted_type(column.type)
            token = json.loads(raw) if isinstance(kind, EncryptedJSON) else raw
            try:
                ring.decrypt(token, kind.context)
            except EncryptionError:
                raise EncryptionError(
                    f"data key {FIRST_KEY_ID} does not decrypt {column.table.name}.{column.name}"
                    ": GUESTCOMMS_MASTER_KEY is not the key it was made with"
                ) from None
            return
