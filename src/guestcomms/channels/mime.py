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

import binascii
import re
import secrets
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.utils import format_datetime
from functools import lru_cache

from guestcomms.channels.base import OutgoingEmail

__all__ = ["address_domain", "address_spec", "build_email_bytes", "header_text"]


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

    The common case is written directly: ASCII header values short enough not to fold, and
    quoted-printable bodies from ``binascii``. Anything else (a non-ASCII or long subject, a
    display name that needs quoting or encoding) goes through the standard library's policy,
    which folds and RFC 2047-encodes it. The standard library's EmailMessage did all of it
    before, at about 2.5 ms per email, most of the SMTP worker's time (docs/performance.md).
    """
    parts = [
        _address_line("From", item.sender),
        _recipient_line(item.recipient, item.recipient_name),
        _text_line("Subject", _checked("Subject", item.subject)),
        b"Date: " + format_datetime(datetime.now(UTC)).encode() + _CRLF,
        _text_line("Message-ID", _checked("Message-ID", item.message_id)),
    ]
    if item.reply_to is not None:
        parts.append(_address_line("Reply-To", item.reply_to))
    for name, value in item.headers.items():
        parts.append(_text_line(_checked_name(name), _checked(name, value)))
    parts.append(b"MIME-Version: 1.0\r\n")
    if item.html is None:
        parts.append(_body_part("plain", item.text))
    else:
        boundary = _new_boundary().encode()
        parts += [
            b'Content-Type: multipart/alternative; boundary="' + boundary + b'"\r\n\r\n',
            b"--" + boundary + _CRLF,
            _body_part("plain", item.text),
            _CRLF + b"--" + boundary + _CRLF,
            _body_part("html", item.html),
            _CRLF + b"--" + boundary + b"--" + _CRLF,
        ]
    return b"".join(parts)


_CRLF = b"\r\n"
_FOLD_AT = 78  # RFC 5322's recommended line length; longer header lines are folded
# an addr-spec as contacts store it (validated on the way in): dot-atom local part, a domain
_SIMPLE_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
# a display name of these characters needs neither quoting nor encoding
_PLAIN_NAME = re.compile(r"[A-Za-z0-9 !#$%&'*+/=?^_`{|}~-]*")


def _body_part(subtype: str, text: str) -> bytes:
    # quoted-printable keeps the message 7-bit whatever the text (we never ask for 8BITMIME)
    encoded = binascii.b2a_qp(_normalise_newlines(text).encode("utf-8"), istext=True)
    return (
        b"Content-Type: text/" + subtype.encode() + b'; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        + encoded.replace(b"\n", _CRLF)
        + (b"" if encoded.endswith(b"\n") else _CRLF)
    )


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _text_line(name: str, value: str) -> bytes:
    if value.isascii() and len(name) + 2 + len(value) <= _FOLD_AT:
        return f"{name}: {value}\r\n".encode()
    return _folded(name, value)


def _folded(name: str, value: object) -> bytes:
    """The header as the standard library folds and encodes it (the uncommon case)."""
    header = POLICY.header_store_parse(name, value)[1]
    return POLICY.fold_binary(name, header)


def _recipient_line(recipient: str, name: str | None) -> bytes:
    _checked("To", recipient)
    _checked("To", name or "")
    _ascii_only(recipient)
    if not _SIMPLE_ADDRESS.fullmatch(recipient):
        raise ValueError(f"header To: invalid address {recipient!r}")
    if not name:
        return _text_line("To", recipient)
    if name.isascii() and _PLAIN_NAME.fullmatch(name):
        return _text_line("To", f"{name} <{recipient}>")
    # Address() quotes a display name with specials and the policy encodes a non-ASCII one
    try:
        address = Address(display_name=name, addr_spec=recipient)
    except Exception as e:
        raise ValueError(f"header To: invalid address {recipient!r}") from e
    return _folded("To", address)


@lru_cache(maxsize=_ADDRESS_CACHE_SIZE)
def _address_line(name: str, value: str) -> bytes:
    # The sender and reply-to repeat across a whole campaign: parse and fold them once.
    _single_address(value)
    return _folded(name, value)


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


def header_text(value: str) -> str:
    """Return ``value`` on one line, fit for a header: every line break and control
    character becomes a space and runs of whitespace collapse to one.

    The composer passes guest data (display names) through it, so a name holding
    ``"\r\nBcc: ..."`` reads as text instead of being refused when the email is built.
    """
    return " ".join(_UNSAFE_HEADER_CHARS.sub(" ", value).split())


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


def _ascii_only(addr_spec: str) -> None:
    # A non-ASCII address needs SMTPUTF8 (or the IDNA form of its domain); left alone, the
    # policy would put an RFC 2047 encoded word inside the address, which no server reads.
    if not addr_spec.isascii():
        raise ValueError(
            f"non-ASCII address {addr_spec!r}: pass the ASCII (IDNA) form of the domain"
        )


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
