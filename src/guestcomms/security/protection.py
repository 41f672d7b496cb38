"""How one engine protects personal fields: keyed hashes for look-ups, and (optionally) the
data keys that encrypt them.

A :class:`FieldProtection` is bound to an engine's dialect when the engine is made
(``db.engine.create_engine``), because the places that need it (column types, mapper events,
repositories) see a dialect or a session, not the settings. An engine made without one (tests,
migrations) hashes with the development secret and does not encrypt.

Hashes are always kept, whether or not encryption is on, so the code that finds a contact by
email or a suppression by address has one path: ``contacts.email_hash`` and
``suppressions.address_hash`` (HMAC-SHA256 keyed from ``secret_key``, ``compliance.hashing``).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from guestcomms.compliance.hashing import address_hash, hash_key, hash_key_from_secret
from guestcomms.config import DEV_SECRET_KEY, Settings
from guestcomms.errors import GuestcommsError
from guestcomms.security.encryption import EncryptionError, key_id_of
from guestcomms.security.key_ring import KeyRingSource


class EncryptedFieldError(GuestcommsError):
    """A filter or look-up needs the plaintext of a field that is encrypted at rest."""


@dataclass(frozen=True, slots=True)
class FieldProtection:
    """The hash key, and the data keys when encryption at rest is on (``keys`` not None)."""

    hash_key: bytes
    keys: KeyRingSource | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> FieldProtection:
        """Hashing keyed from ``secret_key``; encryption when ``master_key`` is set."""
        master = settings.master_key_bytes
        keys = (
            None
            if master is None
            else KeyRingSource(
                settings.database_url,
                master,
                refresh_seconds=settings.data_key_refresh_seconds,
            )
        )
        return cls(hash_key=hash_key(settings), keys=keys)

    @property
    def encrypting(self) -> bool:
        """Whether new values are written encrypted."""
        return self.keys is not None

    def address_hash(self, channel: str, address: str | None) -> str | None:
        """The keyed hash of ``address`` on ``channel``, or None without an address."""
        if not address:
            return None
        return address_hash(self.hash_key, channel, address)

    def encrypt(self, plaintext: str, context: str) -> str:
        """``plaintext`` encrypted for column ``context``, or as it is when encryption is off."""
        if self.keys is None:
            return plaintext
        return self.keys.for_encrypt().encrypt(plaintext, context)

    def decrypt(self, token: str, context: str) -> str:
        """The plaintext of a ciphertext read from column ``context``."""
        if self.keys is None:
            raise EncryptionError(
                f"{context} holds encrypted values but GUESTCOMMS_MASTER_KEY is not set"
            )
        return self.keys.for_decrypt(key_id_of(token)).decrypt(token, context)


_DEFAULT = FieldProtection(hash_key=hash_key_from_secret(DEV_SECRET_KEY))
_BOUND: weakref.WeakKeyDictionary[Dialect, FieldProtection] = weakref.WeakKeyDictionary()


def bind(engine: AsyncEngine, protection: FieldProtection) -> None:
    """Make ``protection`` the one every statement on ``engine`` uses."""
    _BOUND[engine.sync_engine.dialect] = protection


def protection_for(dialect: Dialect) -> FieldProtection:
    """The protection bound to ``dialect``'s engine (hash-only by default)."""
    return _BOUND.get(dialect, _DEFAULT)


def protection_of(session: AsyncSession) -> FieldProtection:
    """The protection of the engine ``session`` is bound to."""
    return protection_for(session.get_bind().dialect)
