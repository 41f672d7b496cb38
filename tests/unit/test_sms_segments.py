"""SMS encoding and segment counting (GSM 03.38 vs UCS-2), and E.164 normalisation."""

from __future__ import annotations

import pytest

from guestcomms.domain.sms import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    SmsEncoding,
    SmsSegments,
    is_gsm7,
    normalize_number,
    segments,
)

GSM7 = SmsEncoding.GSM7
UCS2 = SmsEncoding.UCS2
EMOJI = "\U0001f492"  # wedding: outside the BMP, a surrogate pair in UTF-16


def test_tables_have_the_gsm_03_38_sizes() -> None:
    """The basic table has 127 characters (128 codes minus ESC), the extension table 10."""
    assert len(GSM7_BASIC) == 127
    assert len(GSM7_EXTENSION) == 10
    assert not GSM7_BASIC & GSM7_EXTENSION


def test_160_gsm_characters_are_one_segment() -> None:
    """160 septets fit one message."""
    assert segments("a" * 160) == SmsSegments(GSM7, 160, 1, 160)


def test_161_gsm_characters_are_two_segments_of_153() -> None:
    """One septet more splits the text into parts of 153."""
    assert segments("a" * 161) == SmsSegments(GSM7, 161, 2, 153)


def test_long_gsm_text_counts_153_per_part() -> None:
    """306 septets are two parts; 307 are three."""
    assert segments("a" * 306).segments == 2
    assert segments("a" * 307).segments == 3


@pytest.mark.parametrize("char", sorted("^{}\\[~]|\u20ac\f"))
def test_extension_characters_count_double(char: str) -> None:
    """Each extension-table character is an escape plus a septet: two septets."""
    result = segments(f"a{char}")
    assert (result.encoding, result.characters) == (GSM7, 3)


def test_extension_characters_reach_the_limit_sooner() -> None:
    """80 euro signs are 160 septets (one message); 81 are 162 (two)."""
    assert segments("\u20ac" * 80) == SmsSegments(GSM7, 160, 1, 160)
    assert segments("\u20ac" * 81) == SmsSegments(GSM7, 162, 2, 153)


def test_an_escape_sequence_is_never_split_across_parts() -> None:
    """152 septets then a euro sign: the euro moves to the next part, so 3 parts, not 2."""
    text = "a" * 152 + "\u20ac" + "a" * 152
    result = segments(text)
    assert result.characters == 306  # would be ceil(306 / 153) = 2 without the rule
    assert result.segments == 3


@pytest.mark.parametrize("text", ["\u00c7a va", "\u00e9\u00e8\u00e0\u00f9\u00ec\u00f2", "\u00dfe"])
def test_accented_letters_of_the_basic_table_stay_gsm(text: str) -> None:
    """Capital C cedilla, e acute/grave and friends are in the basic table."""
    assert segments(text).encoding is GSM7


@pytest.mark.parametrize("text", ["\u00e7a va", "\u00ea", "Zo\u00eb", "\u0142"])
def test_a_character_outside_gsm_switches_to_ucs2(text: str) -> None:
    """Lower case c cedilla is not GSM (only the capital is): the text becomes UCS-2."""
    result = segments(text)
    assert result.encoding is UCS2
    assert result.per_segment == 70


def test_ucs2_is_70_then_67_per_part() -> None:
    """70 UCS-2 units are one message; 71 are two parts of 67."""
    assert segments("\u00e7" * 70) == SmsSegments(UCS2, 70, 1, 70)
    assert segments("\u00e7" * 71) == SmsSegments(UCS2, 71, 2, 67)
    assert segments("\u00e7" * 135).segments == 3


def test_an_emoji_is_a_surrogate_pair_of_two_units() -> None:
    """One emoji is two UTF-16 units; 35 fill a message, 36 need two parts."""
    assert segments(EMOJI) == SmsSegments(UCS2, 2, 1, 70)
    assert segments(EMOJI * 35) == SmsSegments(UCS2, 70, 1, 70)
    assert segments(EMOJI * 36) == SmsSegments(UCS2, 72, 2, 67)


def test_a_surrogate_pair_is_never_split_across_parts() -> None:
    """66 units then an emoji: the pair moves to the next part."""
    result = segments("\u00e7" * 66 + EMOJI + "\u00e7" * 66)
    assert result.characters == 134  # would be ceil(134 / 67) = 2 without the rule
    assert result.segments == 3


def test_one_emoji_turns_a_gsm_text_into_ucs2() -> None:
    """A 100-character GSM text with one emoji is UCS-2 and needs two parts."""
    result = segments("a" * 100 + EMOJI)
    assert result == SmsSegments(UCS2, 102, 2, 67)


def test_empty_text_is_one_empty_gsm_segment() -> None:
    """An empty text is GSM-7, 0 characters, one segment if sent."""
    assert segments("") == SmsSegments(GSM7, 0, 1, 160)


def test_encoding_compares_equal_to_its_name() -> None:
    """The encoding is a StrEnum whose values are the names providers and reports use."""
    assert segments("hi").encoding == "GSM-7"
    assert segments("\u00e7").encoding == "UCS-2"


def test_is_gsm7_accepts_both_tables() -> None:
    """Basic and extension characters are GSM; a non-breaking space is not."""
    assert is_gsm7("Hello {world} \u20ac5\n")
    assert not is_gsm7("a\u00a0b")


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [
        ("+44 7911 123456", None, "+447911123456"),
        ("07911 123456", "GB", "+447911123456"),
        ("+1 (415) 555-0123", None, "+14155550123"),
        ("+33 6 12 34 56 78", None, "+33612345678"),
    ],
)
def test_normalize_number_returns_e164(value: str, region: str | None, expected: str) -> None:
    """International and (with a region) national numbers come back in E.164."""
    assert normalize_number(value, default_region=region) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("07911 123456", "international format"),  # national without a region
        ("not a number", "international format"),
        ("+44 12", "not a valid number"),
    ],
)
def test_normalize_number_rejects_with_a_clear_message(value: str, message: str) -> None:
    """An unparseable or invalid number is a ValueError saying what to do."""
    with pytest.raises(ValueError, match=message):
        normalize_number(value)
