"""Build the wire bytes of an email (RFC 5322 + MIME) from an :class:`OutgoingEmail`.

Used by the providers that speak SMTP or upload raw messages. :func:`build_email_bytes` gives
a ``multipart/alternative`` message (text/plain, then text/html) when the item has HTML, else
a single text/plain part; headers are From, To, Subject, Date, Message-ID, Reply-To (when set),
MIME-Version and the item's extra headers. Non-ASCII header text is RFC 2047 encoded and
non-ASCII bodies are quoted-printable or base64, so the result is 7-bit clean.

A header value that contains CR, LF or another line-breaking or control character is refused
with :class:`ValueError`: such a value is how header injection starts (``"Hi\\r\\nBcc: ..."``).
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage, MIMEPart
from functools import lru_cache

from guestcomms.channels.base import OutgoingEmail

__all__ = ["address_domain", "address_spec", "build_email_bytes"]


class _ReusingHeaderRegistry(HeaderRegistry):
    """A header registry that builds each header class once, not once per header.

    The stdlib registry calls ``type()`` for every header it parses (about 30 us each, a
    large share of building a message); the classes it builds are identical every time.
    """

    def __init__(self) -> None:
        super().__init__()
        self._built: dict[type[object], type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        specialised = self.registry.get(name.lower(), self.default_class)
        built = self._built.get(specialised)
        if built is None:
            built = super().__getitem__(name)
            self._built[specialised] = built
        return built


# The SMTP policy gives CRLF line endings and folding at 78 characters. Bodies are forced to
# 7 bit (quoted-printable or base64) because we never negotiate 8BITMIME with the relay.
POLICY = policy.SMTP.clone(cte_type="7bit", header_factory=_ReusingHeaderRegistry())

# Header values must stay on one line. Beyond CR and LF this refuses every other control
# character and the characters str.splitlines() breaks on, so no parser further down the
# line can be talked into seeing a second header.
_UNSAFE_HEADER_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
# RFC 5322 field-name: printable ASCII except the colon.
_HEADER_NAME = re.compile(r"[!-9;-~]+")
# Headers this module writes, or that decide who receives the message or how it is parsed;
# extra headers may not set them (Content-* is refused by prefix).
_RESERVED_HEADERS = frozenset(
    {
        "from",
        "sender",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "reply-to",
        "mime-version",
        "return-path",
    }
)
_ADDRESS_CACHE_SIZE = 1024  # distinct sender / reply-to values kept parsed


def build_email_bytes(item: OutgoingEmail) -> bytes:
    """Return the message as bytes with CRLF line endings, ready for SMTP ``DATA``.

    Raises :class:`ValueError` when a header value contains a line break or control
    character, an address does not parse or is not ASCII, or an extra header name is
    invalid or reserved.
    """
    message = EmailMessage(policy=POLICY)
    message["From"] = _address_header("From", item.sender)
    message["To"] = _recipient_header(item.recipient, item.recipient_name)
    message["Subject"] = _checked("Subject", item.subject)
    message["Date"] = datetime.now(UTC)
    message["Message-ID"] = _checked("Message-ID", item.message_id)
    if item.reply_to is not None:
        message["Reply-To"] = _address_header("Reply-To", item.reply_to)
    for name, value in item.headers.items():
        message[_checked_name(name)] = _checked(name, value)

    if item.html is None:
        message.set_content(item.text)
    else:
        # Parts are built directly rather than through add_alternative(), which would
        # build the text part in place and then move its headers into a new subpart.
        text_part = MIMEPart(policy=POLICY)
        text_part.set_content(item.text)
        html_part = MIMEPart(policy=POLICY)
        html_part.set_content(item.html, subtype="html")
        message["MIME-Version"] = "1.0"
        message["Content-Type"] = f'multipart/alternative; boundary="{_new_boundary()}"'
        message.set_payload([text_part, html_part])
    return message.as_bytes()


def address_spec(value: str) -> str:
    """Return the bare ``local@domain`` of a one-address header value.

    ``"Ana & Ben <hello@example.com>"`` gives ``"hello@example.com"``; a bare address is
    returned as it is. Raises :class:`ValueError` unless ``value`` is exactly one address.
    """
    return _single_address(value).addr_spec


def address_domain(address: str) -> str:
    """Return the lower-cased domain of a one-address header value or a bare address.

    ``"Guestcomms <noreply@Example.com>"`` gives ``"example.com"``. Raises
    :class:`ValueError` unless ``address`` is exactly one address with a domain.
    """
    return _single_address(address).domain.lower()


def _new_boundary() -> str:
    # "=_" cannot occur in quoted-printable or base64 text and the random part cannot be
    # guessed by whoever wrote a 7-bit body, so the boundary needs no search of the body.
    # Left to itself the generator picks one and compiles a fresh regex to check it.
    return f"=_{secrets.token_hex(16)}"


def _checked(name: str, value: str) -> str:
    if _UNSAFE_HEADER_CHARS.search(value):
        raise ValueError(f"header {name}: line breaks and control characters are not allowed")
    return value


def _checked_name(name: str) -> str:
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError(f"invalid header name {name!r}")
    lowered = name.lower()
    if lowered in _RESERVED_HEADERS or lowered.startswith("content-"):
        raise ValueError(f"header {name} is set by guestcomms and cannot be overridden")
    return name


def _recipient_header(recipient: str, name: str | None) -> Address:
    # Address() quotes a display name with specials (commas, quotes) and the policy encodes
    # a non-ASCII one, which building "Name <addr>" by hand would get wrong.
    _checked("To", recipient)
    _checked("To", name or "")
    _ascii_only(recipient)
    try:
        return Address(display_name=name or "", addr_spec=recipient)
    except Exception as e:
        raise ValueError(f"header To: invalid address {recipient!r}") from e


def _ascii_only(addr_spec: str) -> None:
    # A non-ASCII address needs SMTPUTF8 (or the IDNA form of its domain); left alone, the
    # policy would put an RFC 2047 encoded word inside the address, which no server reads.
    if not addr_spec.isascii():
        raise ValueError(
            f"non-ASCII address {addr_spec!r}: pass the ASCII (IDNA) form of the domain"
        )


@lru_cache(maxsize=_ADDRESS_CACHE_SIZE)
def _address_header(name: str, value: str) -> BaseHeader:
    # The sender and reply-to repeat across a whole campaign, so their parsed header is
    # cached; header objects are immutable, and EmailMessage stores one as it is.
    _single_address(value)
    header: BaseHeader = POLICY.header_factory(name, value)
    return header


@lru_cache(maxsize=_ADDRESS_CACHE_SIZE)
def _single_address(value: str) -> Address:
    _checked("address", value)
    try:
        header = POLICY.header_factory("From", value)
    except Exception as e:
        # The stdlib address parser raises more than HeaderParseError on some malformed
        # input (IndexError on "a@"), so everything it raises means "not an address".
        raise ValueError(f"not an email address: {value!r}") from e
    addresses = header.addresses
    if header.defects or len(addresses) != 1 or not addresses[0].username:
        raise ValueError(f"not exactly one email address: {value!r}")
    address: Address = addresses[0]
    if not address.domain:
        raise ValueError(f"email address without a domain: {value!r}")
    _ascii_only(address.addr_spec)
    return address
