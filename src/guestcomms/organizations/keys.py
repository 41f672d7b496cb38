"""API key format and hashing. A key reads ``gck_<prefix>_<secret>``; only the prefix (for
look-up) and the SHA-256 of the secret are stored. The secret has 256 bits of entropy, so a
fast hash is enough: there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

KEY_MARK = "gck"
PREFIX_BYTES = 6
SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class GeneratedKey:
    """A new key: ``plaintext`` is shown once; ``prefix`` and ``secret_hash`` are stored."""

    plaintext: str
    prefix: str
    secret_hash: str


def hash_secret(secret: str) -> str:
    """The stored form of a key's secret part."""
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_key() -> GeneratedKey:
    """Make a fresh key."""
    prefix = secrets.token_hex(PREFIX_BYTES)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return GeneratedKey(f"{KEY_MARK}_{prefix}_{secret}", prefix, hash_secret(secret))


def split_key(plaintext: str) -> tuple[str, str] | None:
    """``(prefix, secret)`` of a well-formed key, else ``None``."""
    mark, _, rest = plaintext.partition("_")
    prefix, _, secret = rest.partition("_")
    if mark != KEY_MARK or len(prefix) != PREFIX_BYTES * 2 or not secret:
        return None
    return prefix, secret


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented secret with the stored hash."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)
