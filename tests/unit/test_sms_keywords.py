"""SMS keywords: a guest's whole text, or the provider's own verdict."""

from __future__ import annotations

import pytest

from guestcomms.domain.sms_keywords import SmsKeyword, classify

STOP, START, HELP = SmsKeyword.STOP, SmsKeyword.START, SmsKeyword.HELP


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("STOP", STOP),
        ("  stop  ", STOP),
        ("Stop please", None),
        ("Cancel my plus-one, sorry", None),
        ("Yes, we'll be there!", None),
        ("STOP.", STOP),
        ("stopall", STOP),
        ("Unsubscribe", STOP),
        ("cancel", STOP),
        ("END", STOP),
        ("quit!", STOP),
        ("start", START),
        ("UNSTOP", START),
        ("Yes", START),
        ("help", HELP),
        ("INFO?", HELP),
        ("Msg", None),
        ("stopping by at 5", None),
        ("", None),
        (None, None),
    ],
)
def test_only_a_whole_keyword_counts(text: str | None, expected: SmsKeyword | None) -> None:
    """Trimmed, any case, surrounding punctuation dropped; a sentence is an ordinary message
    even when it starts with a keyword."""
    assert classify(text) == expected


def test_the_providers_opt_out_type_wins() -> None:
    """Twilio's OptOutType (STOP/START/HELP) overrides the words; other values are ignored."""
    assert classify("arrêt", opt_out_type="STOP") is STOP
    assert classify("STOP", opt_out_type="start") is START
    assert classify("hi", opt_out_type="HELP") is HELP
    assert classify("STOP", opt_out_type="OTHER") is STOP
