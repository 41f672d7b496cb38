"""Every captured provider payload parses into the events its SOURCES.md says it holds.

The table maps each fixture file to the events expected from it. SOURCES.md speaks an older
vocabulary (bounced_hard, bounced_soft, sms_inbound); ours says bounced, soft_bounced and
inbound_sms, and splits its "failed" into failed and rejected (the provider never sent it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from guestcomms.channels.events import (
    DELIVERY_REF_KEY,
    InboundPayloadError,
    InboundRequest,
    ProviderEventType,
)
from guestcomms.channels.inbound import PARSERS, get_parser, ses
from guestcomms.errors import NotFoundError

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "provider-events"
PROVIDER_OF_FOLDER = {"amazon_ses": "ses"}  # folders named otherwise than the provider
# Exercised by test_inbound_signatures.py, not by a parser.
SIGNATURE_VECTORS = {
    "signatures/standard_webhooks_vectors.json",
    "signatures/twilio_request_validator_vectors.json",
}

T = ProviderEventType
SES_ID = "7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"
BREVO_ID = "<201803011158.9876543210@smtp-relay.mailin.fr>"
RESEND_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
TWILIO_SID = "SMe287d7109a5a925f182f0e07fe5b223b"


def ev(kind: T, message_id: str | None, *, to: str | None, **fields: Any) -> dict[str, Any]:
    """One expected event: its type, provider message id and recipient, plus named fields."""
    return {"type": kind, "provider_message_id": message_id, "recipient": to, **fields}


EXPECTED: dict[str, list[dict[str, Any]]] = {
    # -- SendGrid ------------------------------------------------------------------------------
    "sendgrid/delivered.json": [
        ev(
            T.DELIVERED,
            "wrfRRvF7Q0GgwUo2CvDmEA.filter0425p1mdw1.13037.57168B4A1D.0",
            to="recipient@example.com",
            sent_message_id="wrfRRvF7Q0GgwUo2CvDmEA",
            event_id="nOSv8m0eTQ-vxvwNwt3fZQ",
        )
    ],
    "sendgrid/bounce_hard.json": [
        ev(
            T.BOUNCED,
            "Lli-03HcQ5-JLybO9fXsJg.filter0077p1las1.21536.5717FC482.0",
            to="noreply@example.com",
            bounce_code="5.1.1",
            event_id="lC0Rc-FuQmKbnxCWxX1jRQ",
            reason="550 5.1.1 The email account that you tried to reach does not exist.",
        )
    ],
    "sendgrid/deferred.json": [
        ev(
            T.DEFERRED,
            "u9Gvi3mzT6iC2poAb58_qQ.filter0465p1mdw1.8054.5718271B40.0",
            to="recipient@example.com",
        )
    ],
    "sendgrid/open.json": [
        ev(
            T.OPENED,
            "wrfRRvF7Q0GgwUo2CvDmEA.filter0425p1mdw1.13037.57168B4A1D.0",
            to="recipient@example.com",
            user_agent="Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0",
        )
    ],
    "sendgrid/click.json": [
        ev(
            T.CLICKED,
            "_fjPjuJfRW-IPs5SuvYotg.filter0590p1mdw1.2098.57168CFC4B.0",
            to="recipient@example.com",
            url="http://www.example.com",
        )
    ],
    # Dropped = never sent (suppressed): rejected, not a new opt-out and not a bounce.
    "sendgrid/dropped_unsubscribed.json": [
        ev(
            T.REJECTED,
            "filter0199p1las1.4745.5717FB6F5.0",
            to="unsubscribe@example.com",
            reason="Unsubscribed Address",
            sent_message_id=None,
        )
    ],
    # -- Mailgun -------------------------------------------------------------------------------
    "mailgun/delivered.json": [
        ev(
            T.DELIVERED,
            "20180812211713.1.DF5966851B4BAA99@example.org",
            to="recipient@example.com",
            event_id="hTWCTD81RtiDN-...",
        )
    ],
    "mailgun/failed_permanent.json": [
        ev(
            T.BOUNCED,
            "20180812214658.1.0DF563D0B3597700@example.org",
            to="invalid@example.com",
            bounce_code="5.1.1",
            error_code="550",
        )
    ],
    "mailgun/failed_temporary.json": [
        ev(
            T.DEFERRED,
            "20180812214638.1.4A7D468E9BC18C5D@example.org",
            to="undeliverable@nomx.example.com",
            error_code="498",
            reason="No MX for nomx.example.com",
        )
    ],
    "mailgun/complained.json": [
        ev(
            T.COMPLAINED,
            "20130718032413.263EE2E0926@example.org",
            to="recipient@example.com",
            event_id="ncV2XwymRUKbPek_MIM-Gw",
        )
    ],
    "mailgun/unsubscribed.json": [
        ev(
            T.UNSUBSCRIBED,
            "20130822232216.13966.79700@samples.mailgun.org",
            to="recipient@example.com",
            event_id="W3X4JOhFT-OZidZGKKr9iA",
        )
    ],
    "mailgun/opened.json": [
        ev(T.OPENED, "20180812213139.1.BC6694A917BB7E6A@example.org", to="recipient@example.com")
    ],
    "mailgun/clicked.json": [
        ev(T.CLICKED, None, to="recipient@example.com", url="https://example.com/test")
    ],
    # -- Postmark ------------------------------------------------------------------------------
    "postmark/bounce_hard.json": [
        ev(
            T.BOUNCED,
            "2706ee8a-737c-4285-b032-ccd317af53ed",
            to="bounce@example.com",
            bounce_code="5.1.1",
        )
    ],
    "postmark/delivery.json": [
        ev(T.DELIVERED, "883953f4-6105-42a2-a16a-77a8eac79483", to="recipient@example.com")
    ],
    "postmark/open.json": [
        ev(T.OPENED, "f4830d10-9c35-4f0c-bca3-3d9b459821f8", to="recipient@example.com")
    ],
    "postmark/click.json": [
        ev(
            T.CLICKED,
            "f4830d10-9c35-4f0c-bca3-3d9b459821f8",
            to="recipient@example.com",
            url="https://example.com/click/me",
        )
    ],
    "postmark/spam_complaint.json": [
        ev(T.COMPLAINED, "2706ee8a-737c-4285-b032-ccd317af53ed", to="spam@example.com")
    ],
    "postmark/subscription_change_unsubscribe.json": [
        ev(T.UNSUBSCRIBED, "a4909a96-73d7-4c49-b148-a54522d3f7ac", to="john@example.com")
    ],
    "postmark/subscription_change_hardbounce.json": [
        ev(T.BOUNCED, "b4cb783d-78ed-43f2-983b-63f55c712dc8", to="john@example.com")
    ],
    # -- Resend --------------------------------------------------------------------------------
    "resend/email.delivered.json": [ev(T.DELIVERED, RESEND_ID, to="to@example.org")],
    "resend/email.bounced.json": [ev(T.BOUNCED, RESEND_ID, to="bounced@resend.dev")],
    "resend/email.delivery_delayed.json": [
        ev(T.DEFERRED, "56761188-7520-42d8-8898-ff6fc54ce618", to="delivered@resend.dev")
    ],
    "resend/email.complained.json": [ev(T.COMPLAINED, RESEND_ID, to="complained@resend.dev")],
    "resend/email.opened.json": [ev(T.OPENED, RESEND_ID, to="to@example.org")],
    "resend/email.clicked.json": [
        ev(T.CLICKED, RESEND_ID, to="to@example.org", url="https://example.com/test")
    ],
    # -- Amazon SES (through SNS) --------------------------------------------------------------
    "amazon_ses/sns_bounce_permanent.json": [
        ev(
            T.BOUNCED,
            "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
            to="jane@example.com",
            bounce_code="5.1.1",
            event_id="19ba9823-d7f2-53c1-860e-cb10e0d13dfc",
        )
    ],
    "amazon_ses/sns_bounce_two_recipients.json": [
        ev(T.BOUNCED, "00000137860315fd-34208509-5b74-41f3-95c5-22c1edc3c924-000000", to=address)
        for address in ("jane@example.com", "richard@example.com")
    ],
    "amazon_ses/sns_complaint.json": [
        ev(
            T.COMPLAINED,
            "000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
            to="richard@example.com",
            reason="abuse",
        )
    ],
    "amazon_ses/sns_delivery.json": [
        ev(
            T.DELIVERED,
            "0000014644fe5ef6-9a483358-9170-4cb4-a269-f5dcdf415321-000000",
            to="jane@example.com",
        )
    ],
    "amazon_ses/sns_open_event_publishing.json": [ev(T.OPENED, SES_ID, to="recipient@example.com")],
    "amazon_ses/sns_click_event_publishing.json": [
        ev(
            T.CLICKED,
            SES_ID,
            to="recipient@example.com",
            url="https://docs.aws.amazon.com/ses/latest/DeveloperGuide/",
        )
    ],
    # SOURCES says failed: SES refused to send it, which our vocabulary calls rejected.
    "amazon_ses/sns_reject_event_publishing.json": [
        ev(T.REJECTED, SES_ID, to="recipient@example.com", reason="Bad content")
    ],
    # -- Brevo ---------------------------------------------------------------------------------
    "brevo/delivered.json": [ev(T.DELIVERED, BREVO_ID, to="recipient@example.com")],
    "brevo/hard_bounce.json": [ev(T.BOUNCED, BREVO_ID, to="not-a-user@example.com")],
    "brevo/soft_bounce.json": [ev(T.SOFT_BOUNCED, BREVO_ID, to="recipient@no-mx.example.com")],
    # The reason quotes a 550, but the event says deferred: trust the event name.
    "brevo/deferred.json": [ev(T.DEFERRED, BREVO_ID, to="notauser@example.com")],
    "brevo/spam.json": [ev(T.COMPLAINED, BREVO_ID, to="recipient@example.com")],
    "brevo/unsubscribe.json": [ev(T.UNSUBSCRIBED, BREVO_ID, to="recipient@example.com")],
    # -- Twilio --------------------------------------------------------------------------------
    "twilio/inbound_sms.form": [
        ev(
            T.INBOUND_SMS,
            TWILIO_SID,
            to=None,
            text="Msg",
            from_number="+14133881111",
            to_number="+12028831111",
        )
    ],
    "twilio/inbound_mms_media.form": [
        ev(T.INBOUND_SMS, TWILIO_SID, to=None, text=None, from_number="+14133881111")
    ],
    "twilio/status_delivered.form": [ev(T.DELIVERED, TWILIO_SID, to=None)],
    "twilio/status_failed_21610_unsubscribed.form": [
        ev(T.FAILED, TWILIO_SID, to="+12028831111", error_code="21610", opted_out=True)
    ],
    "twilio/status_failed_63018.form": [
        ev(T.FAILED, TWILIO_SID, to=None, error_code="63018", opted_out=False)
    ],
    "twilio/status_sent_messaging_service.form": [
        ev(T.SENT, "SM0b6e2697aae04182a9f5b5c7a8994c7f", to="2021")
    ],
    # -- Vonage: in a receipt `to` is our sender id and `msisdn` the recipient (absent here) ----
    "vonage/dlr_delivered.query": [ev(T.DELIVERED, "external1", to=None, from_number="2020")],
    "vonage/dlr_expired.query": [ev(T.FAILED, "external1", to=None)],
    "vonage/dlr_failed_errcode6.query": [ev(T.FAILED, "external1", to=None, error_code="6")],
    "vonage/inbound_sms.query": [
        ev(
            T.INBOUND_SMS,
            "external1",
            to=None,
            text="Join",
            from_number="2349067554729",
            to_number="2020",
        )
    ],
}


def request_for(path: Path) -> InboundRequest:
    """The request a provider makes to deliver this fixture: JSON, form post or query string."""
    body = path.read_bytes()
    url = "https://guestcomms.example/v1/inbound/x/org"
    if path.suffix == ".query":
        return InboundRequest(method="GET", url=f"{url}?{body.decode().strip()}")
    media = "application/x-www-form-urlencoded" if path.suffix == ".form" else "application/json"
    return InboundRequest(
        method="POST", url=url, headers={"Content-Type": media}, body=body.strip()
    )


def provider_of(relative: str) -> str:
    """The parser name for a fixture's folder."""
    folder = relative.split("/", 1)[0]
    return PROVIDER_OF_FOLDER.get(folder, folder)


def test_fixture_folder_exists() -> None:
    """The shared fixtures sit beside the repository (as in CI); their absence is a failure."""
    assert FIXTURES.is_dir(), f"missing {FIXTURES}"


def test_every_fixture_file_is_in_the_table() -> None:
    """A new fixture file fails here until the table says what it must parse into."""
    files = {
        str(p.relative_to(FIXTURES))
        for p in FIXTURES.rglob("*")
        if p.is_file() and p.suffix != ".md"
    }
    assert files == set(EXPECTED) | SIGNATURE_VECTORS


@pytest.mark.parametrize("relative", sorted(EXPECTED))
def test_fixture_parses_to_expected_events(relative: str) -> None:
    """The parser yields exactly the expected events, with the raw item kept and ids set."""
    events = get_parser(provider_of(relative)).parse(request_for(FIXTURES / relative))
    assert len(events) == len(EXPECTED[relative])
    for event, expected in zip(events, EXPECTED[relative], strict=True):
        assert {key: getattr(event, key) for key in expected} == expected
        assert event.provider == provider_of(relative)
        assert event.raw
        assert event.event_id
        assert event.occurred_at is None or event.occurred_at.tzinfo is not None


@pytest.mark.parametrize("relative", sorted(EXPECTED))
def test_replayed_fixture_yields_the_same_event_ids(relative: str) -> None:
    """Parsing the same payload twice gives the same event ids, so applying is idempotent."""
    parser = get_parser(provider_of(relative))
    first = [e.event_id for e in parser.parse(request_for(FIXTURES / relative))]
    again = [e.event_id for e in parser.parse(request_for(FIXTURES / relative))]
    assert first == again
    assert len(set(first)) == len(first)


def json_request(payload: Any, **headers: str) -> InboundRequest:
    """A JSON POST carrying ``payload``."""
    body = json.dumps(payload).encode()
    return InboundRequest(
        method="POST",
        url="https://h/x",
        headers={"Content-Type": "application/json", **headers},
        body=body,
    )


def test_sendgrid_blocked_bounce_is_soft_and_custom_arg_is_the_delivery_ref() -> None:
    """A SendGrid bounce of type blocked is a soft bounce; our custom arg becomes delivery_ref."""
    item = {"event": "bounce", "type": "blocked", "email": "a@b.c", DELIVERY_REF_KEY: "dlv_1"}
    (event,) = get_parser("sendgrid").parse(json_request([item]))
    assert (event.type, event.delivery_ref) == (T.SOFT_BOUNCED, "dlv_1")


def test_unknown_event_names_become_unknown_with_the_raw_item_kept() -> None:
    """An event name we do not map is `unknown`, never dropped, and its payload is kept."""
    item = {"event": "brand_new_thing", "email": "a@b.c", "sg_event_id": "e1"}
    (event,) = get_parser("sendgrid").parse(json_request([item]))
    assert (event.type, event.raw) == (T.UNKNOWN, item)


@pytest.mark.parametrize(
    ("provider", "payload"),
    [
        (
            "mailgun",
            {"event-data": {"event": "delivered", "user-variables": {DELIVERY_REF_KEY: "d"}}},
        ),
        ("postmark", {"RecordType": "Delivery", "Metadata": {DELIVERY_REF_KEY: "d"}}),
        (
            "resend",
            {"type": "email.sent", "data": {"to": ["a@b.c"], "tags": {DELIVERY_REF_KEY: "d"}}},
        ),
        ("brevo", {"event": "delivered", "X-Mailin-custom": json.dumps({DELIVERY_REF_KEY: "d"})}),
    ],
)
def test_email_parsers_read_our_delivery_ref(provider: str, payload: dict[str, Any]) -> None:
    """The delivery id we attach at send time comes back as delivery_ref."""
    (event,) = get_parser(provider).parse(json_request(payload))
    assert event.delivery_ref == "d"


def test_ses_reads_delivery_ref_from_message_tags_and_splits_nothing_else() -> None:
    """SES event publishing carries our tag in mail.tags."""
    inner = {
        "eventType": "Send",
        "mail": {"messageId": "m", "destination": ["a@b.c"], "tags": {DELIVERY_REF_KEY: ["d"]}},
    }
    envelope = {"Type": "Notification", "MessageId": "n1", "Message": json.dumps(inner)}
    (event,) = get_parser("ses").parse(json_request(envelope))
    assert (event.type, event.delivery_ref, event.event_id) == (T.SENT, "d", "n1")


def test_ses_subscription_confirmation_has_no_events() -> None:
    """An SNS SubscriptionConfirmation yields no events; its SubscribeURL is exposed instead."""
    envelope = {"Type": "SubscriptionConfirmation", "SubscribeURL": "https://sns.x/confirm"}
    assert ses.parse(json_request(envelope)) == []
    assert ses.subscription_confirmation_url(json_request(envelope)) == "https://sns.x/confirm"


def test_sms_parsers_read_our_delivery_ref() -> None:
    """Vonage echoes client-ref; Twilio's status-callback URL carries our id as a parameter."""
    vonage = InboundRequest(
        method="GET", url="https://h/x?messageId=m&status=delivered&client-ref=d"
    )
    twilio = InboundRequest(
        method="POST",
        url=f"https://h/x?{DELIVERY_REF_KEY}=d",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=b"MessageSid=SM1&MessageStatus=delivered",
    )
    assert get_parser("vonage").parse(vonage)[0].delivery_ref == "d"
    assert get_parser("twilio").parse(twilio)[0].delivery_ref == "d"


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        ("sendgrid", b'{"event": "delivered"}'),
        ("mailgun", b"[]"),
        ("postmark", b"not json"),
        ("resend", b'{"type": "email.sent"}'),
        ("ses", b'{"Type": "Notification", "Message": "not json"}'),
        ("brevo", b"[1, 2]"),
        ("twilio", b"Body=hi"),
    ],
)
def test_unreadable_bodies_raise_payload_error(provider: str, body: bytes) -> None:
    """A body that is not the provider's payload raises InboundPayloadError (422)."""
    request = InboundRequest(method="POST", url="https://h/x", body=body)
    with pytest.raises(InboundPayloadError):
        get_parser(provider).parse(request)


def test_registry_names_every_provider_and_refuses_unknown_names() -> None:
    """PARSERS holds the eight providers by NAME; an unknown name raises NotFoundError."""
    assert set(PARSERS) == {
        "sendgrid",
        "mailgun",
        "postmark",
        "resend",
        "ses",
        "brevo",
        "twilio",
        "vonage",
    }
    assert all(name == parser.NAME for name, parser in PARSERS.items())
    with pytest.raises(NotFoundError):
        get_parser("carrier-pigeon")
