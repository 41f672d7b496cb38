"""SendGrid Event Webhook: a JSON array of events, signed with ECDSA P-256.

``secret`` is the signed event webhook's *verification key*: the base64 DER public key the
SendGrid console shows (a PEM ``-----BEGIN PUBLIC KEY-----`` block is accepted too). SendGrid
signs ``timestamp + body`` with ECDSA over SHA-256 and sends the base64 DER signature in
``X-Twilio-Email-Event-Webhook-Signature`` and the Unix time in
``X-Twilio-Email-Event-Webhook-Timestamp``; timestamps outside the tolerance are refused.

Matching: every send sets the custom arg ``guestcomms_delivery_id``, which SendGrid copies as a
top-level key of each event (``delivery_ref``). ``sg_message_id`` is the send's ``X-Message-Id``
followed by ``.filter...``: we keep it whole and expose the part before the first ``.`` as
``sent_message_id`` (absent when the id starts with ``filter``, as on some ``dropped`` events).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from guestcomms.channels.events import (
    DELIVERY_REF_KEY,
    InboundPayloadError,
    InboundRequest,
    InboundSignatureError,
    ProviderEvent,
    ProviderEventType,
    parse_timestamp,
    stable_event_id,
    text_or_none,
)
from guestcomms.channels.inbound.signing import check_timestamp, require_secret

NAME = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

T = ProviderEventType
# SendGrid `event` -> our type. `bounce` is refined by its `type` below.
EVENT_TYPES: dict[str, ProviderEventType] = {
    "processed": T.SENT,  # accepted and queued by SendGrid
    "deferred": T.DEFERRED,  # the receiving server asked SendGrid to try later
    "delivered": T.DELIVERED,
    "bounce": T.BOUNCED,
    "blocked": T.SOFT_BOUNCED,  # older accounts send this as its own event name
    # Not sent at all because the address is suppressed or invalid: never an opt-out or bounce.
    "dropped": T.REJECTED,
    "open": T.OPENED,
    "click": T.CLICKED,
    "spamreport": T.COMPLAINED,
    "unsubscribe": T.UNSUBSCRIBED,
    "group_unsubscribe": T.UNSUBSCRIBED,  # unsubscribed from one suppression group
    "group_resubscribe": T.UNKNOWN,  # a re-subscription: nothing to record against a send
}
# `bounce` events carry `type`: "bounce" is permanent, "blocked" is a temporary refusal.
BOUNCE_TYPES: dict[str, ProviderEventType] = {
    "bounce": T.BOUNCED,
    "blocked": T.SOFT_BOUNCED,
}


def _public_key(secret: str) -> ec.EllipticCurvePublicKey:
    try:
        if secret.lstrip().startswith("-----BEGIN"):
            key = load_pem_public_key(secret.encode("ascii"))
        else:
            key = load_der_public_key(base64.b64decode(secret, validate=True))
    except (ValueError, TypeError, binascii.Error) as e:
        raise InboundSignatureError("The SendGrid verification key is not a public key.") from e
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InboundSignatureError("The SendGrid verification key is not an EC key.")
    return key


def verify(request: InboundRequest, *, secret: str | None, now: datetime | None = None) -> None:
    """Verify SendGrid's ECDSA signature over timestamp + body; raise InboundSignatureError."""
    key = _public_key(require_secret(secret, NAME))
    signature = request.headers.get(SIGNATURE_HEADER)
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise InboundSignatureError("The SendGrid signature headers are missing.")
    check_timestamp(timestamp, now=now)
    try:
        der = base64.b64decode(signature, validate=True)
        key.verify(der, timestamp.encode("utf-8") + request.body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature) as e:
        raise InboundSignatureError("The SendGrid signature does not match.") from e


def sent_message_id(sg_message_id: str | None) -> str | None:
    """The ``X-Message-Id`` part of an ``sg_message_id`` (before the first '.'), if present."""
    if not sg_message_id or sg_message_id.startswith("filter"):
        return None
    return sg_message_id.split(".", 1)[0]


def _event(item: dict[str, Any]) -> ProviderEvent:
    name = str(item.get("event", ""))
    kind = EVENT_TYPES.get(name, T.UNKNOWN)
    if name == "bounce":
        kind = BOUNCE_TYPES.get(str(item.get("type", "bounce")), T.BOUNCED)
    message_id = text_or_none(item.get("sg_message_id"))
    bounce_code = text_or_none(item.get("status"))
    return ProviderEvent(
        type=kind,
        provider=NAME,
        provider_message_id=message_id,
        sent_message_id=sent_message_id(message_id),
        recipient=text_or_none(item.get("email")),
        occurred_at=parse_timestamp(item.get("timestamp")),
        event_id=text_or_none(item.get("sg_event_id")) or stable_event_id(item),
        reason=text_or_none(item.get("reason")) or text_or_none(item.get("response")),
        bounce_code=bounce_code if bounce_code and "." in bounce_code else None,
        url=text_or_none(item.get("url")),
        user_agent=text_or_none(item.get("useragent")),
        delivery_ref=text_or_none(item.get(DELIVERY_REF_KEY)),
        raw=item,
    )


def parse(request: InboundRequest) -> list[ProviderEvent]:
    """One event per item of SendGrid's JSON array; raises InboundPayloadError otherwise."""
    payload = request.json()
    if not isinstance(payload, list) or not all(isinstance(i, dict) for i in payload):
        raise InboundPayloadError("A SendGrid event webhook body is a JSON array of objects.")
    return [_event(item) for item in payload]
