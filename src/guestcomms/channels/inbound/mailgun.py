"""Mailgun webhooks: ``{"signature": {...}, "event-data": {...}}``, one event per request.

``secret`` is the domain's *HTTP webhook signing key*. Mailgun signs with HMAC-SHA256 of
``timestamp + token`` (hex) inside the body's ``signature`` object. That signature does not
cover ``event-data``: it proves the request came from Mailgun recently, and the caller should
remember seen tokens for the tolerance window to refuse a replayed signature block. Timestamps
outside the tolerance are refused. The legacy form-encoded webhooks are not accepted.

Matching: every send sets the variable ``guestcomms_delivery_id`` (``v:`` parameter or
``X-Mailgun-Variables``), echoed in ``user-variables``; the provider message id is the
Message-ID header.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

from guestcomms.channels.events import (
    DELIVERY_REF_KEY,
    InboundPayloadError,
    InboundRequest,
    InboundSignatureError,
    ProviderEvent,
    ProviderEventType,
    enhanced_status_code,
    object_or_empty,
    parse_timestamp,
    stable_event_id,
    text_or_none,
)
from guestcomms.channels.inbound.signing import (
    check_timestamp,
    constant_time_equals,
    require_secret,
)

NAME = "mailgun"

T = ProviderEventType
# Mailgun `event` -> our type. `failed` is refined by reason, then severity, below.
EVENT_TYPES: dict[str, ProviderEventType] = {
    "accepted": T.SENT,  # Mailgun accepted and queued the message
    "rejected": T.REJECTED,  # Mailgun refused to send it (e.g. sending limits)
    "delivered": T.DELIVERED,
    "failed": T.BOUNCED,
    "opened": T.OPENED,
    "clicked": T.CLICKED,
    "unsubscribed": T.UNSUBSCRIBED,
    "complained": T.COMPLAINED,
    "stored": T.UNKNOWN,  # an inbound message stored by a route: not about a send
}
# A `failed` event whose `reason` says Mailgun never tried: the address is already suppressed.
FAILED_REASONS: dict[str, ProviderEventType] = {
    "suppress-bounce": T.REJECTED,
    "suppress-unsubscribe": T.REJECTED,
    "suppress-complaint": T.REJECTED,
    "old": T.FAILED,  # retries ran out without a definite answer from the receiving server
}
# Otherwise `severity` decides: permanent is a hard bounce; temporary means Mailgun retries.
FAILED_SEVERITIES: dict[str, ProviderEventType] = {
    "permanent": T.BOUNCED,
    "temporary": T.DEFERRED,
}


def signature_for(*, signing_key: str, timestamp: str, token: str) -> str:
    """The hex signature Mailgun sends for ``timestamp`` and ``token``."""
    data = (timestamp + token).encode("utf-8")
    return hmac.new(signing_key.encode("utf-8"), data, hashlib.sha256).hexdigest()


def _body(request: InboundRequest) -> dict[str, Any]:
    payload = request.json()
    if not isinstance(payload, dict) or not isinstance(payload.get("event-data"), dict):
        raise InboundPayloadError("A Mailgun webhook body is a JSON object with event-data.")
    return payload


def verify(request: InboundRequest, *, secret: str | None, now: datetime | None = None) -> None:
    """Verify the body's ``signature`` block with the webhook signing key."""
    key = require_secret(secret, NAME)
    try:
        block = _body(request).get("signature")
    except InboundPayloadError as e:
        raise InboundSignatureError("The Mailgun request carries no signature.") from e
    if not isinstance(block, dict):
        raise InboundSignatureError("The Mailgun request carries no signature.")
    timestamp, token, signature = (
        str(block.get(k, "")) for k in ("timestamp", "token", "signature")
    )
    if not (timestamp and token and signature):
        raise InboundSignatureError("The Mailgun signature block is incomplete.")
    check_timestamp(timestamp, now=now)
    expected = signature_for(signing_key=key, timestamp=timestamp, token=token)
    if not constant_time_equals(expected, signature.lower()):
        raise InboundSignatureError("The Mailgun signature does not match.")


def _kind(data: dict[str, Any]) -> ProviderEventType:
    name = str(data.get("event", ""))
    if name != "failed":
        return EVENT_TYPES.get(name, T.UNKNOWN)
    by_reason = FAILED_REASONS.get(str(data.get("reason", "")))
    return by_reason or FAILED_SEVERITIES.get(str(data.get("severity", "")), T.FAILED)


def _error_code(code: Any) -> str | None:
    """The SMTP reply code of a failure (a 2xx success code is no error)."""
    text = text_or_none(code)
    return None if text is None or text.startswith("2") else text


def parse(request: InboundRequest) -> list[ProviderEvent]:
    """The one event in a Mailgun webhook; raises InboundPayloadError for other bodies."""
    data: dict[str, Any] = _body(request)["event-data"]
    headers = object_or_empty(object_or_empty(data.get("message")).get("headers"))
    status = object_or_empty(data.get("delivery-status"))
    variables = object_or_empty(data.get("user-variables"))
    client = object_or_empty(data.get("client-info"))
    reason = text_or_none(status.get("description")) or text_or_none(status.get("message"))
    return [
        ProviderEvent(
            type=_kind(data),
            provider=NAME,
            provider_message_id=text_or_none(headers.get("message-id")),
            recipient=text_or_none(data.get("recipient")),
            occurred_at=parse_timestamp(data.get("timestamp")),
            event_id=text_or_none(data.get("id")) or stable_event_id(data),
            reason=reason or text_or_none(data.get("reason")),
            bounce_code=enhanced_status_code(status.get("message"), status.get("description")),
            error_code=_error_code(status.get("code")),
            url=text_or_none(data.get("url")),
            user_agent=text_or_none(client.get("user-agent")),
            delivery_ref=text_or_none(variables.get(DELIVERY_REF_KEY)),
            raw=data,
        )
    ]
