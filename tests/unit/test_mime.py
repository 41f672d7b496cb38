"""The MIME builder's output parses back to exactly what was given, whatever the content."""

from __future__ import annotations

import email
import email.policy
import uuid

import pytest

from guestcomms.channels.base import OutgoingEmail
from guestcomms.channels.mime import build_email_bytes

LONG = "An unusually long subject line for a wedding invitation that must be folded " * 2


def _item(**fields: object) -> OutgoingEmail:
    values: dict[str, object] = {
        "delivery_id": uuid.uuid4(),
        "organization_id": uuid.uuid4(),
        "idempotency_key": "k",
        "message_id": "<0123@wedding.example>",
        "sender": "Ana & Ben <hello@anaben.example>",
        "recipient": "zoe@example.org",
        "recipient_name": "Zoe Martin",
        "subject": "You're invited",
        "text": "Dear Zoe,\nsee you there.\n",
        "html": "<p>Dear Zoe</p>",
    }
    values.update(fields)
    return OutgoingEmail(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"subject": "Zoë, you're invited — 12 June ☀"},
        {"subject": LONG},
        {"recipient_name": 'Martin, Zoë "Zo"'},
        {"recipient_name": None},
        {"recipient_name": "O'Brien (bride's side)"},
        {"text": "line with trailing spaces   \nand a tab\t\n" + "x" * 200 + "\n.leading dot\n"},
        {"text": "Windows\r\nline\r\nendings", "html": None},
        {"html": "<p>" + "héllo wörld " * 50 + "</p>", "text": "ünïcode text = sign"},
        {"reply_to": "Planner <planner@wedding.example>", "headers": {"X-Campaign": "rsvp-1"}},
    ],
)
def test_message_parses_back_to_its_input(fields: dict[str, object]) -> None:
    """Headers and both parts survive a round trip through the standard parser, 7-bit clean."""
    item = _item(**fields)
    raw = build_email_bytes(item)
    assert raw.isascii()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed.defects == []
    assert parsed["Subject"] == item.subject
    assert parsed["Message-ID"] == item.message_id
    assert parsed["From"].addresses[0].addr_spec == "hello@anaben.example"
    to = parsed["To"].addresses[0]
    assert to.addr_spec == item.recipient
    assert to.display_name == (item.recipient_name or "")
    for name, value in item.headers.items():
        assert parsed[name] == value
    if item.reply_to:
        assert parsed["Reply-To"].addresses[0].addr_spec == "planner@wedding.example"
    text = parsed.get_body(preferencelist=("plain",))
    assert text is not None
    expected_text = item.text.replace("\r\n", "\n")
    assert text.get_content().replace("\r\n", "\n").rstrip("\n") == expected_text.rstrip("\n")
    if item.html is None:
        assert parsed.get_content_type() == "text/plain"
    else:
        assert parsed.get_content_type() == "multipart/alternative"
        html = parsed.get_body(preferencelist=("html",))
        assert html is not None
        assert html.get_content().replace("\r\n", "\n").rstrip("\n") == item.html


@pytest.mark.parametrize(
    "fields",
    [
        {"subject": "Hi\r\nBcc: victim@example.com"},
        {"recipient_name": "Zoe\nBcc: victim@example.com"},
        {"headers": {"X-Tag": "a\r\nBcc: victim@example.com"}},
        {"headers": {"Bcc": "victim@example.com"}},
        {"recipient": "not an address"},
    ],
)
def test_header_injection_is_refused(fields: dict[str, object]) -> None:
    """CR/LF in any header value, or a reserved extra header, raises instead of adding one."""
    with pytest.raises(ValueError):  # noqa: PT011 - build_email_bytes documents ValueError
        build_email_bytes(_item(**fields))
