"""Resend webhooks: one JSON event per request, signed through Svix (Standard Webhooks).

``secret`` is the webhook's *signing secret* (``whsec_...``). Svix sends the Standard Webhooks
signature under ``svix-id`` / ``svix-timestamp`` / ``svix-signature``; the ``webhook-*`` names
are accepted too. The ``svix-id`` is the event's unique id, so it is the ``event_id``.

Matching: every send sets the tag ``guestcomms_delivery_id`` (and the
``X-Guestcomms-Delivery-Id`` header), echoed in ``data.tags`` / ``data.headers``; ``email_id`` is
the id the send API returned.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from guestcomms.channels.events import (
    DELIVERY_REF_HEADER,
    DELIVERY_REF_KEY,
    InboundPayloadError,
    InboundRequest,
    ProviderEvent,
    ProviderEventType,
    object_or_empty,
    parse_timestamp,
    stable_event_id,
    text_or_none,
)
from guestcomms.channels.inbound.signing import require_secret, verify_standard_webhook

NAME = "resend"
HEADER_PREFIXES = ("svix", "webhook")

T = ProviderEventType
# Resend `type` -> our type; email.bounced is refined by data.bounce.type below.
EVENT_TYPES: dict[str, ProviderEventType] = {
    "email.sent": T.SENT,  # Resend accepted it and handed it to the receiving server
    "email.delivered": T.DELIVERED,
    "email.delivery_delayed": T.DEFERRED,
    "email.bounced": T.BOUNCED,
    "email.complained": T.COMPLAINED,
    "email.opened": T.OPENED,
    "email.clicked": T.CLICKED,
    "email.failed": T.FAILED,  # Resend could not send it (e.g. an invalid attachment)
    "email.suppressed": T.REJECTED,  # not sent: the address is on Resend's suppression list
    "email.scheduled": T.UNKNOWN,  # only scheduled; a later event reports the outcome
}
# data.bounce.type (SES terms underneath). Older payloads omit it: those are hard bounces.
BOUNCE_TYPES: dict[str, ProviderEventType] = {
    "Permanent": T.BOUNCED,
    "Transient": T.SOFT_BOUNCED,
    "Undetermined": T.SOFT_BOUNCED,  # not certain enough to suppress the address
}


def verify(request: InboundRequest, *, secret: str | None, now: datetime | None = None) -> None:
    """Verify the Svix / Standard Webhooks signature; raise InboundSignatureError."""
    verify_standard_webhook(
        request, secret=require_secret(secret, NAME), now=now, prefixes=HEADER_PREFIXES
    )


def _delivery_ref(data: dict[str, Any]) -> str | None:
    """Our delivery id from ``tags`` (an object, or name/value pairs) or the email headers."""
    tags = data.get("tags")
    if isinstance(tags, dict):
        return text_or_none(tags.get(DELIVERY_REF_KEY))
    wanted = {DELIVERY_REF_KEY, DELIVERY_REF_HEADER.lower()}
    for pair in [*_pairs(tags), *_pairs(data.get("headers"))]:
        if str(pair.get("name", "")).lower() in wanted:
            return text_or_none(pair.get("value"))
    return None


def _pairs(value: Any) -> list[dict[str, Any]]:
    return [p for p in value if isinstance(p, dict)] if isinstance(value, list) else []


def _kind(payload: dict[str, Any], data: dict[str, Any]) -> ProviderEventType:
    kind = EVENT_TYPES.get(str(payload.get("type", "")), T.UNKNOWN)
    bounce = data.get("bounce")
    if kind is T.BOUNCED and isinstance(bounce, dict) and bounce.get("type"):
        return BOUNCE_TYPES.get(str(bounce["type"]), T.SOFT_BOUNCED)
    return kind


def parse(request: InboundRequest) -> list[ProviderEvent]:
    """The one event in a Resend webhook; raises InboundPayloadError for other bodies."""
    payload = request.json()
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        raise InboundPayloadError("A Resend webhook body is a JSON object with data.")
    data: dict[str, Any] = payload["data"]
    to = data.get("to")
    recipients = [to] if isinstance(to, str) else [r for r in to or [] if isinstance(r, str)]
    click = object_or_empty(data.get("click"))
    bounce = object_or_empty(data.get("bounce"))
    svix_id = request.headers.get("svix-id") or request.headers.get("webhook-id")
    return [
        ProviderEvent(
            type=_kind(payload, data),
            provider=NAME,
            provider_message_id=text_or_none(data.get("email_id")),
            # Resend reports per email, not per recipient: name one only when there is one.
            recipient=recipients[0] if len(recipients) == 1 else None,
            occurred_at=parse_timestamp(click.get("timestamp") or payload.get("created_at")),
            event_id=svix_id or stable_event_id(payload),
            reason=text_or_none(bounce.get("message")),
            url=text_or_none(click.get("link")),
            user_agent=text_or_none(click.get("userAgent")),
            delivery_ref=_delivery_ref(data),
            raw=payload,
        )
    ]
