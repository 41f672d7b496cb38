"""Signed one-click unsubscribe links (RFC 8058) and the footer of marketing emails.

A token names the organization, contact, channel and delivery it was made for, and carries
an HMAC-SHA256 over them with a key derived from the server's ``secret_key`` (never the
secret itself): ``<base64url payload>.<base64url mac>``. A tampered or foreign token does
not verify (the routes answer 404). Tokens do not expire: an unsubscribe link in an old
email must keep working. Rotating ``secret_key`` invalidates every link already sent.

Every marketing email carries::

    List-Unsubscribe: <https://PUBLIC_BASE_URL/u/TOKEN>
    List-Unsubscribe-Post: List-Unsubscribe=One-Click

and a footer (text and HTML) with the sender's identity and physical address from the
organization's settings (``sender_name``, ``physical_address``) and the same link, which
opens the hosted preference page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from html import escape

from guestcomms.config import Settings

_KEY_CONTEXT = b"guestcomms.unsubscribe.v1"
_FIELDS = 4  # organization, contact, channel, delivery
ONE_CLICK_BODY = "List-Unsubscribe=One-Click"


@dataclass(frozen=True, slots=True)
class UnsubscribeClaim:
    """What an unsubscribe token was made for."""

    organization_id: uuid.UUID
    contact_id: uuid.UUID
    channel: str
    delivery_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class SenderIdentity:
    """The sender's name and physical address, shown in every marketing email's footer."""

    name: str
    physical_address: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class UnsubscribeLinks:
    """Makes and verifies unsubscribe tokens, and the headers and footer that carry them."""

    def __init__(self, *, secret: bytes, base_url: str) -> None:
        self._key = hmac.new(secret, _KEY_CONTEXT, hashlib.sha256).digest()
        self._base_url = base_url.rstrip("/")

    @classmethod
    def from_settings(cls, settings: Settings) -> UnsubscribeLinks:
        """Links keyed by ``settings.secret_key`` under ``settings.public_base_url``."""
        return cls(
            secret=settings.secret_key.get_secret_value().encode(),
            base_url=settings.public_base_url,
        )

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def token(self, claim: UnsubscribeClaim) -> str:
        """The signed token of ``claim``."""
        payload = ".".join(
            (claim.organization_id.hex, claim.contact_id.hex, claim.channel, claim.delivery_id.hex)
        ).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, token: str) -> UnsubscribeClaim | None:
        """The claim of a genuine token; ``None`` for anything tampered with or malformed."""
        encoded, _, mac = token.partition(".")
        try:
            payload, presented = _unb64(encoded), _unb64(mac)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(self._mac(payload), presented):
            return None
        parts = payload.decode(errors="replace").split(".")
        if len(parts) != _FIELDS:
            return None
        try:
            return UnsubscribeClaim(
                organization_id=uuid.UUID(hex=parts[0]),
                contact_id=uuid.UUID(hex=parts[1]),
                channel=parts[2],
                delivery_id=uuid.UUID(hex=parts[3]),
            )
        except ValueError:
            return None

    def url(self, claim: UnsubscribeClaim) -> str:
        """The per-recipient unsubscribe (and preference page) URL."""
        return f"{self._base_url}/u/{self.token(claim)}"

    def headers(self, claim: UnsubscribeClaim) -> dict[str, str]:
        """The RFC 8058 headers of a marketing email."""
        return {
            "List-Unsubscribe": f"<{self.url(claim)}>",
            "List-Unsubscribe-Post": ONE_CLICK_BODY,
        }


def footer_text(identity: SenderIdentity, url: str) -> str:
    """The plain-text footer appended to a marketing email's text part."""
    return (
        f"\n\n--\n{identity.name}\n{identity.physical_address}\n"
        f"Unsubscribe or choose what you receive: {url}\n"
    )


def footer_html(identity: SenderIdentity, url: str) -> str:
    """The HTML footer appended to a marketing email's HTML part (every value escaped)."""
    address = "<br>".join(escape(line) for line in identity.physical_address.splitlines())
    return (
        '\n<hr><p style="font-size:12px;color:#666">'
        f"{escape(identity.name)}<br>{address}<br>"
        f'<a href="{escape(url)}">Unsubscribe or choose what you receive</a></p>\n'
    )


def sender_identity(settings: dict[str, object] | None) -> SenderIdentity | None:
    """The sender identity in an organization's ``settings``, or ``None`` if incomplete."""
    settings = settings or {}
    name, address = settings.get("sender_name"), settings.get("physical_address")
    if isinstance(name, str) and name.strip() and isinstance(address, str) and address.strip():
        return SenderIdentity(name.strip(), address.strip())
    return None
