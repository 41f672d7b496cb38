"""Twilio Programmable Messaging webhooks: status callbacks and inbound messages (form posts).

``secret`` is the account's *auth token* (or, where the request carries
``X-Twilio-Webhooks-Signature-Settings``, that shared key's secret). Twilio signs the full URL
it called plus the form parameters (see :func:`signing.verify_twilio_signature`); the route must
pass the URL exactly as Twilio called it. Twilio sends no timestamp, so there is no tolerance.

Matching: status callbacks carry only the ``MessageSid`` the send returned. Each send may set
its StatusCallback URL with a ``guestcomms_delivery_id`` query parameter, which Twilio signs as
part of the URL and which this parser reports as ``delivery_ref``.

Error 21610 (the recipient replied STOP) is a failure that also means the recipient opted out:
the event has ``opted_out=True`` and ``recipient`` set from ``To``. Inbound messages with
``OptOutType=STOP`` (Twilio Advanced Opt-Out) are marked the same way; recognising STOP words in
other inbound texts is the compliance layer's job.
"""

from __future__ import annotations

from datetime import datetime

from guestcomms.channels.events import (
    DELIVERY_REF_KEY,
    InboundPayloadError,
    InboundRequest,
    ProviderEvent,
    ProviderEventType,
    stable_event_id,
    text_or_none,
)
from guestcomms.channels.inbound.signing import require_secret, verify_twilio_signature

NAME = "twilio"
UNSUBSCRIBED_ERROR = "21610"  # "Attempt to send to unsubscribed recipient"

T = ProviderEventType
# Twilio MessageStatus (or SmsStatus) -> our type.
STATUSES: dict[str, ProviderEventType] = {
    "accepted": T.SENT,  # a Messaging Service accepted it
    "scheduled": T.SENT,
    "queued": T.SENT,
    "sending": T.SENT,
    "sent": T.SENT,  # handed to the carrier: not yet an outcome
    "delivered": T.DELIVERED,
    "undelivered": T.FAILED,  # the carrier could not deliver it
    "failed": T.FAILED,  # Twilio could not send it
    "canceled": T.REJECTED,  # a scheduled message canceled before sending
    "read": T.OPENED,  # WhatsApp / RCS read receipt
    "receiving": T.INBOUND_SMS,
    "received": T.INBOUND_SMS,
}
# What the ErrorCodes we most often see mean (Twilio's error dictionary).
ERROR_REASONS: dict[str, str] = {
    "21211": "Invalid 'To' phone number",
    "21610": "The recipient unsubscribed (replied STOP)",
    "21614": "'To' number is not a valid mobile number",
    "30003": "Unreachable destination handset",
    "30004": "Message blocked",
    "30005": "Unknown destination handset",
    "30006": "Landline or unreachable carrier",
    "30007": "Message filtered by the carrier",
    "30008": "Unknown error",
    "63018": "Rate limit exceeded for the channel",
}


def verify(request: InboundRequest, *, secret: str | None, now: datetime | None = None) -> None:
    """Verify X-Twilio-Signature with the auth token; ``now`` is unused (no timestamp)."""
    verify_twilio_signature(request, auth_token=require_secret(secret, NAME))


def parse(request: InboundRequest) -> list[ProviderEvent]:
    """The one event in a status callback or inbound message; InboundPayloadError otherwise."""
    params = request.form if request.method.upper() == "POST" else request.query
    raw: dict[str, str] = {}
    for key, value in params.items():
        raw.setdefault(key, value)  # the first value of a repeated name
    status = raw.get("MessageStatus") or raw.get("SmsStatus") or ""
    sid = raw.get("MessageSid") or raw.get("SmsSid")
    if not status or not sid:
        raise InboundPayloadError("A Twilio webhook has MessageSid and MessageStatus.")
    kind = STATUSES.get(status, T.UNKNOWN)
    error = text_or_none(raw.get("ErrorCode"))
    inbound = kind is T.INBOUND_SMS
    opted_out = error == UNSUBSCRIBED_ERROR or raw.get("OptOutType", "").upper() == "STOP"
    return [
        ProviderEvent(
            type=kind,
            provider=NAME,
            provider_message_id=sid,
            # Status callbacks name the recipient only sometimes; inbound messages come to us.
            recipient=None if inbound else text_or_none(raw.get("To")),
            event_id=stable_event_id(raw),
            reason=ERROR_REASONS.get(error, f"Twilio error {error}") if error else None,
            error_code=error,
            text=raw.get("Body") if inbound else None,
            from_number=text_or_none(raw.get("From")),
            to_number=text_or_none(raw.get("To")),
            delivery_ref=text_or_none(request.query.get(DELIVERY_REF_KEY)),
            opted_out=opted_out,
            raw=raw,
        )
    ]
