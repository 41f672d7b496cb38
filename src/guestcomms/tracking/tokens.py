"""Signed, per-delivery open and click tokens.

Same scheme as the unsubscribe links (``compliance/unsubscribe.py``): an HMAC-SHA256 with a
key derived from ``secret_key`` under its own context string, written as
``<base64url payload>.<base64url mac>``. The payload is binary to keep links short::

    open:  kind=0x01 | organization (16 bytes) | delivery (16 bytes)
    click: kind=0x03 | organization (16 bytes) | delivery (16 bytes)
           | link index (uint16, big-endian) | links in the message (uint16) | URL (UTF-8)

The number of tracked links in the delivery's message rides in each click token, so the
``all-links-clicked`` machine rule (``tracking/machine.py``) can tell a scanner that followed
every link from a guest who followed two of ten, without storing a count per delivery. Click
tokens of kind 0x02, made before the count was added (the same layout without it), still read,
with the count unknown: tokens in emails already sent keep working.

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
_KIND_CLICK_UNCOUNTED = 0x02  # before the link count: read, no longer made
_KIND_CLICK = 0x03
_UUID_BYTES = 16
_OPEN_PAYLOAD_BYTES = 1 + 2 * _UUID_BYTES
_INDEX_BYTES = 2  # uint16: at most 65,536 distinct links in one message
MAX_LINK_INDEX = 2 ** (8 * _INDEX_BYTES) - 1
MAC_BYTES = 16  # HMAC-SHA256 truncated to 128 bits
MAX_URL_BYTES = 2048  # longer URLs are left untracked: the token would be an unwieldy link
MAX_TOKEN_CHARS = 4 * (_OPEN_PAYLOAD_BYTES + 2 * _INDEX_BYTES + MAX_URL_BYTES + MAC_BYTES) // 3 + 8
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
    """What a click token was made for: the link's index in the message, its target URL and
    how many tracked links the message has (``None`` in tokens made before it was carried)."""

    organization_id: uuid.UUID
    delivery_id: uuid.UUID
    link_index: int
    url: str
    links_in_message: int | None = None


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
    links_in_message: int,
) -> str:
    """The signed click token of link ``link_index`` (target ``url``) in one delivery whose
    message has ``links_in_message`` tracked links.

    Raises ``ValueError`` if ``url`` is not redirectable (see ``is_redirectable``), is longer
    than ``MAX_URL_BYTES``, or ``link_index`` is outside ``0..links_in_message - 1`` (and
    ``links_in_message`` outside ``1..MAX_LINK_INDEX + 1``).
    """
    if not is_redirectable(url):
        raise ValueError("only absolute http(s) URLs in printable ASCII can be tracked")
    encoded = url.encode()
    if len(encoded) > MAX_URL_BYTES:
        raise ValueError(f"URL longer than {MAX_URL_BYTES} bytes")
    if not 0 < links_in_message <= MAX_LINK_INDEX + 1:
        raise ValueError(f"links in the message outside 1..{MAX_LINK_INDEX + 1}")
    if not 0 <= link_index < links_in_message:
        raise ValueError(f"link index outside 0..{links_in_message - 1}")
    payload = (
        bytes([_KIND_CLICK])
        + organization_id.bytes
        + delivery_id.bytes
        + link_index.to_bytes(_INDEX_BYTES, "big")
        # stored as count - 1, so the largest index's message fits the same two bytes
        + (links_in_message - 1).to_bytes(_INDEX_BYTES, "big")
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
    if not payload or payload[0] not in (_KIND_CLICK, _KIND_CLICK_UNCOUNTED):
        return None
    counted = payload[0] == _KIND_CLICK
    index_end = _OPEN_PAYLOAD_BYTES + _INDEX_BYTES
    header = index_end + _INDEX_BYTES if counted else index_end
    if len(payload) <= header:
        return None
    try:
        url = payload[header:].decode()
    except UnicodeDecodeError:
        return None
    if not is_redirectable(url):
        return None
    organization_id, delivery_id = _uuids(payload)
    link_index = int.from_bytes(payload[_OPEN_PAYLOAD_BYTES:index_end], "big")
    links = int.from_bytes(payload[index_end:header], "big") + 1 if counted else None
    if links is not None and link_index >= links:
        return None  # signed, but never made so: no such link in its message
    return ClickClaim(
        organization_id=organization_id,
        delivery_id=delivery_id,
        link_index=link_index,
        url=url,
        links_in_message=links,
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
