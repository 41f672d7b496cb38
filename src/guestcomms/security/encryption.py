"""Field encryption: AES-256-GCM ciphertexts that name their data key, and key wrapping.

A ciphertext is text, so it fits the columns that held the plaintext::

    $gc1$<key id>$<base64url(nonce || ciphertext || tag)>

The 12-byte nonce is random per value. The associated data binds the ciphertext to its key id
and to the column it belongs to (``contacts.email``), so a value copied into another column,
or relabelled with another key id, fails to decrypt instead of being read as something else.

The first data key, ``k1``, is derived from the master key (HKDF-SHA256); every later one is a
random 32-byte key stored wrapped (AES-256-GCM again, associated data ``data-key:<id>``) under
the master key, which never touches the database: it comes from the ``GUESTCOMMS_MASTER_KEY``
setting. See ``security.key_ring`` for how a process loads them and
``security.rotation`` for rotation.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from guestcomms.errors import GuestcommsError

PREFIX = "$gc1$"
KEY_BYTES = 32  # AES-256
_NONCE_BYTES = 12


class EncryptionError(GuestcommsError):
    """A value could not be encrypted or decrypted (missing key, or altered ciphertext)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def is_ciphertext(value: object) -> bool:
    """Whether ``value`` is a ciphertext made here (anything else is a legacy plaintext)."""
    return isinstance(value, str) and value.startswith(PREFIX)


def key_id_of(token: str) -> str:
    """The data key id a ciphertext names; ``EncryptionError`` if it is not one."""
    if not is_ciphertext(token):
        raise EncryptionError("not a guestcomms ciphertext")
    key_id, sep, _ = token[len(PREFIX) :].partition("$")
    if not sep or not key_id:
        raise EncryptionError("malformed ciphertext: no key id")
    return key_id


def _seal(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def _open(key: bytes, sealed: bytes, associated: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], associated)
    except InvalidTag:
        raise EncryptionError("ciphertext does not authenticate (altered, or wrong key)") from None


def parse_master_key(text: str) -> bytes:
    """The 32-byte master key from its base64 text; ``ValueError`` saying what is wrong."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64 (`guestcomms keys master-key` makes one)") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"must decode to {KEY_BYTES} bytes, not {len(key)}")
    return key


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return os.urandom(KEY_BYTES)


def derive_key(master: bytes, key_id: str) -> bytes:
    """A data key derived from the master key (HKDF-SHA256), for ``key_id``."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=None,
        info=f"guestcomms data key {key_id}".encode(),
    ).derive(master)


def encode_key(key: bytes) -> str:
    """A key as base64 text (what ``GUESTCOMMS_MASTER_KEY`` holds)."""
    return base64.b64encode(key).decode()


def wrap_key(master: bytes, key_id: str, key: bytes) -> str:
    """``key`` encrypted under ``master``, bound to ``key_id``."""
    return _b64(_seal(master, key, f"data-key:{key_id}".encode()))


def unwrap_key(master: bytes, key_id: str, wrapped: str) -> bytes:
    """The data key ``wrap_key`` wrapped; ``EncryptionError`` under another master key."""
    try:
        return _open(master, _unb64(wrapped), f"data-key:{key_id}".encode())
    except EncryptionError:
        raise EncryptionError(
            f"data key {key_id} does not unwrap: GUESTCOMMS_MASTER_KEY is not the key it was "
            "made with"
        ) from None


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The data keys one process can use: every known key decrypts, the active one encrypts."""

    keys: Mapping[str, bytes]
    active: str

    def encrypt(self, plaintext: str, context: str) -> str:
        """``plaintext`` sealed under the active key for the column named ``context``."""
        sealed = _seal(
            self.keys[self.active], plaintext.encode(), _associated(self.active, context)
        )
        return f"{PREFIX}{self.active}${_b64(sealed)}"

    def decrypt(self, token: str, context: str) -> str:
        """The plaintext of ``token``, made for column ``context``."""
        key_id = key_id_of(token)
        key = self.keys.get(key_id)
        if key is None:
            raise EncryptionError(f"unknown data key {key_id}")
        body = token[len(PREFIX) + len(key_id) + 1 :]
        try:
            sealed = _unb64(body)
        except (binascii.Error, ValueError):
            raise EncryptionError("malformed ciphertext: not base64") from None
        return _open(key, sealed, _associated(key_id, context)).decode()


def _associated(key_id: str, context: str) -> bytes:
    return f"{key_id}|{context}".encode()
