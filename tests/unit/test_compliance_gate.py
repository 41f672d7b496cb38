"""The compliance gate's pure decision: which opt-out blocks which purpose on which channel."""

from __future__ import annotations

import pytest

from guestcomms.compliance.gate import IDENTITY_REQUIRED, Purpose, decide, purpose_of
from guestcomms.compliance.unsubscribe import SenderIdentity, sender_identity

ID = SenderIdentity("Ana & Ben", "1 Via Roma")
M, T, E = Purpose.MARKETING, Purpose.TRANSACTIONAL, Purpose.EMERGENCY


@pytest.mark.parametrize(
    ("purpose", "channel", "suppression", "consent", "expected"),
    [
        (M, "email", "unsubscribe", None, "suppressed: unsubscribe (email)"),
        (T, "email", "unsubscribe", None, None),
        (E, "email", "unsubscribe", None, None),
        (M, "email", "hard_bounce", True, "suppressed: hard_bounce (email)"),
        (T, "email", "complaint", None, "suppressed: complaint (email)"),
        (E, "email", "hard_bounce", None, "suppressed: hard_bounce (email)"),
        (E, "sms", "stop", None, "suppressed: stop (sms)"),
        (T, "sms", "opt_out", None, "suppressed: opt_out (sms)"),
        (T, "email", "something-new", None, "suppressed: something-new (email)"),
        (M, "email", None, False, "no marketing consent: revoked (email)"),
        (T, "email", None, False, None),
        (M, "email", None, None, None),
        (M, "sms", None, None, "no marketing consent: sms marketing needs explicit consent"),
        (M, "voice", None, None, "no marketing consent: voice marketing needs explicit consent"),
        (M, "sms", None, True, None),
        (M, "push", None, None, None),
    ],
)
def test_decide(
    purpose: Purpose, channel: str, suppression: str | None, consent: bool | None, expected: str
) -> None:
    """Each opt-out blocks exactly the purposes the documented rule says."""
    assert (
        decide(
            purpose=purpose, channel=channel, suppression=suppression, consent=consent, identity=ID
        )
        == expected
    )


def test_marketing_email_needs_sender_identity_and_topics_can_be_declined() -> None:
    """Marketing email without identity is blocked; a declined topic is blocked."""
    args = {"purpose": M, "channel": "email", "suppression": None, "consent": True}
    assert decide(**args, identity=None) == IDENTITY_REQUIRED  # type: ignore[arg-type]
    assert decide(**args, identity=ID, topic="marketing-x", declined=frozenset({"marketing-x"}))  # type: ignore[arg-type]
    assert decide(purpose=T, channel="email", suppression=None, consent=None, identity=None) is None
    assert sender_identity({"sender_name": "A", "physical_address": " "}) is None


def test_purpose_comes_from_priority_and_category() -> None:
    """Priority 0 is an emergency whatever the template; a marketing* category is marketing."""
    assert purpose_of(priority=0, category="marketing") is E
    assert purpose_of(priority=2, category="Marketing-News") is M
    assert purpose_of(priority=2, category="invitations") is T
    assert purpose_of(priority=2, category=None) is T
