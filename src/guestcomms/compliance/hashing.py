"""The keyed hash of an address: what an erased contact's suppression keeps instead of the
address, so a re-import of the same address is still suppressed.

HMAC-SHA256 of ``"<channel>:<normalised address>"`` (email lower-cased and trimmed, phone
without spaces: contacts hold E.164 already), keyed by a key derived from the server's
``secret_key``. Rotating the secret key makes old hashes unmatchable: keep it.
"""

from __future__ import annotations

import hashlib
import hmac

from guestcomms.config import Settings

_KEY_CONTEXT = b"guestcomms.address-hash.v1"


def hash_key(settings: Settings) -> bytes:
    """The address-hash key derived from ``settings.secret_key`` (never the secret itself)."""
    return hash_key_from_secret(settings.secret_key.get_secret_value())


def hash_key_from_secret(secret: str) -> bytes:
    """The address-hash key derived from the secret key's text."""
    return hmac.new(secret.encode(), _KEY_CONTEXT, hashlib.sha256).digest()


def normalise_address(channel: str, address: str) -> str:
    """``address`` as suppressions compare it: an email lower-cased, a phone without spaces."""
    text = address.strip()
    if channel == "email":
        return text.lower()
    return "".join(text.split())


def address_hash(key: bytes, channel: str, address: str) -> str:
    """The keyed hash (64 hex digits) of ``address`` on ``channel``."""
    message = f"{channel}:{normalise_address(channel, address)}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()
