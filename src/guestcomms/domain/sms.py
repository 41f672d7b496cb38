"""SMS arithmetic: how a text is encoded, how many segments it costs, and E.164 numbers.

An SMS carries 140 bytes of user data. A text made only of characters in the GSM 03.38
default alphabet is sent as 7-bit septets (160 per message); characters of the GSM
extension table (``^ { } \\ [ ~ ] | €`` and form feed) take an escape septet plus their
own, so they count as two. Any other character switches the whole text to UCS-2 (in
practice UTF-16): 70 code units per message, and a character outside the Basic
Multilingual Plane (most emoji) is a surrogate pair, two units.

A text longer than one message is split into parts that each give up room to a
concatenation header (6 bytes): 153 septets or 67 UTF-16 units per part. Phones and
carriers never split an escape sequence or a surrogate pair across two parts, so such a
character that would straddle a boundary moves to the next part; :func:`segments` counts
parts that way, which is what providers bill.

Pure functions, no I/O; the SMS providers and the events that report segments call them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "GSM7_MULTIPART_SEPTETS",
    "GSM7_SINGLE_SEPTETS",
    "UCS2_MULTIPART_UNITS",
    "UCS2_SINGLE_UNITS",
    "SmsEncoding",
    "SmsSegments",
    "is_gsm7",
    "normalize_number",
    "segments",
]

GSM7_SINGLE_SEPTETS = 160  # septets in a message sent on its own
GSM7_MULTIPART_SEPTETS = 153  # septets per part of a concatenated message
UCS2_SINGLE_UNITS = 70  # UTF-16 code units in a message sent on its own
UCS2_MULTIPART_UNITS = 67  # UTF-16 code units per part of a concatenated message

# The GSM 03.38 default alphabet, in code order 0x00-0x7F (Unicode's GSM0338.TXT mapping),
# without 0x1B, the escape to the extension table. 0x09 is the capital C cedilla: a lower
# case "ç" is not in the alphabet and needs UCS-2.
GSM7_BASIC = frozenset(
    "@\u00a3$\u00a5\u00e8\u00e9\u00f9\u00ec\u00f2\u00c7\n\u00d8\u00f8\r\u00c5\u00e5"  # 0x00
    "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039e\u00c6\u00e6\u00df\u00c9"  # 0x10
    " !\"#\u00a4%&'()*+,-./"  # 0x20
    "0123456789:;<=>?"  # 0x30
    "\u00a1ABCDEFGHIJKLMNOPQRSTUVWXYZ\u00c4\u00d6\u00d1\u00dc\u00a7"  # 0x40
    "\u00bfabcdefghijklmnopqrstuvwxyz\u00e4\u00f6\u00f1\u00fc\u00e0"  # 0x60
)
# The extension table: each is sent as ESC (0x1B) plus one septet, so it counts as two.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|\u20ac")
_GSM7_ALL = GSM7_BASIC | GSM7_EXTENSION
_BMP_LIMIT = 0xFFFF  # code points above this are a surrogate pair in UTF-16


class SmsEncoding(StrEnum):
    """How a text travels over SMS."""

    GSM7 = "GSM-7"
    UCS2 = "UCS-2"


@dataclass(frozen=True, slots=True)
class SmsSegments:
    """What a text costs as SMS.

    ``characters`` is in the encoding's units: septets for GSM-7 (an extension character
    counts 2), UTF-16 code units for UCS-2 (a surrogate pair counts 2). ``per_segment`` is
    the capacity of one part: 160/70 for a single message, 153/67 once it is split.
    """

    encoding: SmsEncoding
    characters: int
    segments: int
    per_segment: int


def is_gsm7(text: str) -> bool:
    """Whether every character of ``text`` is in the GSM 03.38 basic or extension table."""
    return _GSM7_ALL.issuperset(text)


def segments(text: str) -> SmsSegments:
    """Encoding, length and segment count of ``text`` (see the module docstring).

    An empty text is one GSM-7 segment of 0 characters: sent, it would still be a message.
    """
    if is_gsm7(text):
        doubles = sum(1 for char in text if char in GSM7_EXTENSION)
        septets = len(text) + doubles
        if septets <= GSM7_SINGLE_SEPTETS:
            return SmsSegments(SmsEncoding.GSM7, septets, 1, GSM7_SINGLE_SEPTETS)
        count = (
            _pack((2 if char in GSM7_EXTENSION else 1 for char in text), GSM7_MULTIPART_SEPTETS)
            if doubles
            else math.ceil(septets / GSM7_MULTIPART_SEPTETS)
        )
        return SmsSegments(SmsEncoding.GSM7, septets, count, GSM7_MULTIPART_SEPTETS)
    pairs = sum(1 for char in text if ord(char) > _BMP_LIMIT)
    units = len(text) + pairs
    if units <= UCS2_SINGLE_UNITS:
        return SmsSegments(SmsEncoding.UCS2, units, 1, UCS2_SINGLE_UNITS)
    count = (
        _pack((2 if ord(char) > _BMP_LIMIT else 1 for char in text), UCS2_MULTIPART_UNITS)
        if pairs
        else math.ceil(units / UCS2_MULTIPART_UNITS)
    )
    return SmsSegments(SmsEncoding.UCS2, units, count, UCS2_MULTIPART_UNITS)


def _pack(widths: Iterable[int], capacity: int) -> int:
    """Parts needed for characters of ``widths`` units, none split across two parts."""
    parts, used = 1, 0
    for width in widths:
        if used + width > capacity:
            parts += 1
            used = 0
        used += width
    return parts


def normalize_number(value: str, *, default_region: str | None = None) -> str:
    """Return ``value`` as an E.164 number (``+447700900123``).

    ``default_region`` (ISO 3166 alpha-2, e.g. ``"GB"``) lets a national number through;
    without it the number must start with ``+``. Raises ``ValueError`` saying what is wrong.
    """
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException as e:
        raise ValueError(
            f"invalid phone number {value!r}: use international format, e.g. +14155550123"
        ) from e
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"invalid phone number {value!r}: not a valid number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
