"""Signed, per-delivery open and click tokens.

Same scheme as the unsubscribe links (``compliance/unsubscribe.py``): an HMAC-SHA256 with a
key derived from ``secret_key`` under its own context string, written as
``<base64url payload>.<base64url mac>``. The payload is binary to keep links short::

    open:  kind=0x01 | organization (16 bytes) | delivery (16 bytes)
    click: kind=0x02 | organization (16 bytes) | delivery (16 bytes)
           | link index (uint16, big-endian) | URL (UTF-8)

The kind byte is under the MAC, so an open token never reads as a click token and back. The
click URL is under the MAC too: a redirect can only go to a URL that our server put into that
delivery's content, and only to an absolute ``http(s)`` URL of printable ASCII (safe to put
in a ``Location`` header). The MAC is truncated to 128 bits (``MAC_BYTES``).

Decoding is strict: base64url without padding and in canonical form (the unused low bits of
the last character must be zero), so every change of a character of a token fails to verify.
Anything tampered with, malformed or of the wrong kind reads as ``None``; the routes answer
404 and never redirect. Tokens do not expire; rotating ``secret_key`` invalidates them all.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from guestcomms.compliance.unsubscribe import _b64
from guestcomms.config import Settings

_KEY_CONTEXT = b"guestcomms.tracking.v1"
_KIND_OPEN = 0x01
_KIND_CLICK = 0x02
_UUID_BYTES = 16
_OPEN_PAYLOAD_BYTES = 1 + 2 * _UUID_BYTES
_INDEX_BYTES = 2  # uint16: at most 65,536 distinct links in one message
MAX_LINK_INDEX = 2 ** (8 * _INDEX_BYTES) - 1
MAC_BYTES = 16  # HMAC-SHA256 truncated to 128 bits
MAX_URL_BYTES = 2048  # longer URLs are left untracked: the token would be an unwieldy link
MAX_TOKEN_CHARS = 4 * (1 + _OPEN_PAYLOAD_BYTES + _INDEX_BYTES + MAX_URL_BYTES + MAC_BYTES) // 3 + 8
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
# An absolute URL we redirect to: printable ASCII only (no space, no control characters), so it
# can go into a Location header as is; checked again on the way back in, after the MAC.
_REDIRECTABLE = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True, slots=True)
class OpenClaim:
    """What an open-pixel token was made for."""

    organization_id: uuid.UUID
    delivery_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class ClickClaim:
    """What a click token was made for: the link's index in the message and its target URL."""

    organization_id: uuid.UUID
    delivery_id: uuid.UUID
    link_index: int
    url: str


def tracking_key(settings: Settings) -> bytes:
    """The tracking MAC key, derived from ``settings.secret_key`` (never the secret itself)."""
    secret = settings.secret_key.get_secret_value().encode()
    return hmac.new(secret, _KEY_CONTEXT, hashlib.sha256).digest()


def is_redirectable(url: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL with a host, in printable ASCII."""
    if not _REDIRECTABLE.fullmatch(url) or "\\" in url:
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in {"http", "https"} and bool(parts.hostname)


def make_open_token(key: bytes, *, organization_id: uuid.UUID, delivery_id: uuid.UUID) -> str:
    """The signed open-pixel token of one delivery."""
    payload = bytes([_KIND_OPEN]) + organization_id.bytes + delivery_id.bytes
    return _sign(key, payload)


def make_click_token(
    key: bytes,
    *,
    organization_id: uuid.UUID,
    delivery_id: uuid.UUID,
    link_index: int,
    url: str,
) -> str:
    """The signed click token of link ``link_index`` (target ``url``) in one delivery.

    Raises ``ValueError`` if ``url`` is not redirectable (see ``is_redirectable``), is longer
    than ``MAX_URL_BYTES``, or ``link_index`` is outside ``0..MAX_LINK_INDEX``.
    """
    if not is_redirectable(url):
        raise ValueError("only absolute http(s) URLs in printable ASCII can be tracked")
    encoded = url.encode()
    if len(encoded) > MAX_URL_BYTES:
        raise ValueError(f"URL longer than {MAX_URL_BYTES} bytes")
    if not 0 <= link_index <= MAX_LINK_INDEX:
        raise ValueError(f"link index outside 0..{MAX_LINK_INDEX}")
    payload = (
        bytes([_KIND_CLICK])
        + organization_id.bytes
        + delivery_id.bytes
        + link_index.to_bytes(_INDEX_BYTES, "big")
        + encoded
    )
    return _sign(key, payload)


def read_open_token(key: bytes, token: str) -> OpenClaim | None:
    """The claim of a genuine open token; ``None`` for anything else."""
    payload = _verified_payload(key, token)
    if payload is None or len(payload) != _OPEN_PAYLOAD_BYTES or payload[0] != _KIND_OPEN:
        return None
    organization_id, delivery_id = _uuids(payload)
    return OpenClaim(organization_id=organization_id, delivery_id=delivery_id)


def read_click_token(key: bytes, token: str) -> ClickClaim | None:
    """The claim of a genuine click token to a redirectable URL; ``None`` for anything else."""
    payload = _verified_payload(key, token)
    header = _OPEN_PAYLOAD_BYTES + _INDEX_BYTES
    if payload is None or len(payload) <= header or payload[0] != _KIND_CLICK:
        return None
    try:
        url = payload[header:].decode()
    except UnicodeDecodeError:
        return None
    if not is_redirectable(url):
        return None
    organization_id, delivery_id = _uuids(payload)
    return ClickClaim(
        organization_id=organization_id,
        delivery_id=delivery_id,
        link_index=int.from_bytes(payload[_OPEN_PAYLOAD_BYTES:header], "big"),
        url=url,
    )


def _sign(key: bytes, payload: bytes) -> str:
    return f"{_b64(payload)}.{_b64(_mac(key, payload))}"


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:MAC_BYTES]


def _strict_unb64(text: str) -> bytes | None:
    # The unsubscribe module's decoder is lenient (it skips foreign characters and ignores
    # the unused low bits); here a token has exactly one spelling.
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return data if _b64(data) == text else None


def _verified_payload(key: bytes, token: str) -> bytes | None:
    if len(token) > MAX_TOKEN_CHARS:
        return None
    parts = token.split(".")
    if len(parts) != 2:
        return None
    payload, presented = _strict_unb64(parts[0]), _strict_unb64(parts[1])
    if payload is None or presented is None:
        return None
    if not hmac.compare_digest(_mac(key, payload), presented):
        return None
    return payload


def _uuids(payload: bytes) -> tuple[uuid.UUID, uuid.UUID]:
    start = 1
    middle = start + _UUID_BYTES
    return (
        uuid.UUID(bytes=payload[start:middle]),
        uuid.UUID(bytes=payload[middle : middle + _UUID_BYTES]),
    )
