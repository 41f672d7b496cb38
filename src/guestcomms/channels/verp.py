"""VERP return paths: one envelope sender per delivery, so a bounce names what it is about.

An SMTP send with a bounce domain configured uses ``bounces+dlv_<32 hex>@<bounce domain>`` as
its envelope sender (MAIL FROM). Receiving MTAs send delivery status notifications to that
address, and the bounce listener (:mod:`guestcomms.engine.bounces`) reads the delivery back
from the recipient it was sent to, whatever the report's body looks like.

Pure functions, no I/O.
"""

from __future__ import annotations

import re
import uuid

from guestcomms.domain.ids import IdKind, InvalidIdError, from_public, to_public

__all__ = ["DEFAULT_LOCAL_PART", "delivery_from_return_path", "return_path"]

DEFAULT_LOCAL_PART = "bounces"
_SEPARATOR = "+"  # the sub-address separator almost every MTA understands
_DELIVERY_TAG = re.compile(r"dlv_[0-9a-f]{32}")  # ASCII only: int() would take other digits


def return_path(
    *, delivery_id: uuid.UUID, bounce_domain: str, local_part: str = DEFAULT_LOCAL_PART
) -> str:
    """The envelope sender for ``delivery_id``: ``bounces+dlv_<hex>@<bounce_domain>``.

    Raises ``ValueError`` when the domain or local part could not round-trip (empty, or
    holding ``@``, ``+``, whitespace or angle brackets).
    """
    domain = bounce_domain.strip().rstrip(".")
    if not _is_plain(domain) or not _is_plain(local_part) or _SEPARATOR in local_part:
        raise ValueError(f"cannot build a VERP address from {local_part!r} and {bounce_domain!r}")
    return f"{local_part}{_SEPARATOR}{to_public(IdKind.DELIVERY, delivery_id)}@{domain}"


def delivery_from_return_path(
    address: str, *, bounce_domain: str, local_part: str = DEFAULT_LOCAL_PART
) -> uuid.UUID | None:
    """The delivery a VERP address encodes, or None if ``address`` is not one of ours.

    Tolerates surrounding whitespace and one pair of angle brackets, and compares the domain
    and the local part case-insensitively (some MTAs change the case of what they echo).
    Anything else (another domain, another local part, a malformed id) gives None.
    """
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    mailbox, at, domain = text.rpartition("@")
    if not at or domain.rstrip(".").casefold() != bounce_domain.strip().rstrip(".").casefold():
        return None
    prefix, separator, tag = mailbox.partition(_SEPARATOR)
    tag = tag.lower()
    if not separator or prefix.casefold() != local_part.casefold():
        return None
    if not _DELIVERY_TAG.fullmatch(tag):
        return None
    try:
        return from_public(IdKind.DELIVERY, tag)
    except InvalidIdError:
        return None


def _is_plain(text: str) -> bool:
    return bool(text) and not any(c.isspace() or c in "@<>" for c in text)
