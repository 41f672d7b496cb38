"""Postmark webhooks: one JSON object per request, told apart by ``RecordType``.

Postmark does not sign webhooks. It protects them with credentials in the webhook URL
(``https://user:password@host/v1/inbound/postmark/{org}``), which arrive as HTTP Basic
credentials, so ``secret`` is ``user:password`` (a token sent as ``Authorization: Bearer`` or
a ``token`` query parameter is accepted too; see :func:`signing.verify_shared_secret`).

Matching: every send sets ``Metadata["guestcomms_delivery_id"]``, echoed in each event's
``Metadata``; ``MessageID`` is the id the send API returned.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from guestcomms.channels.events import (
    DELIVERY_REF_KEY,
    InboundPayloadError,
    InboundRequest,
    ProviderEvent,
    ProviderEventType,
    enhanced_status_code,
    object_or_empty,
    parse_timestamp,
    stable_event_id,
    text_or_none,
)
from guestcomms.channels.inbound.signing import require_secret, verify_shared_secret

NAME = "postmark"

T = ProviderEventType
# Postmark `RecordType` -> our type; Bounce and SubscriptionChange are refined below.
RECORD_TYPES: dict[str, ProviderEventType] = {
    "Delivery": T.DELIVERED,
    "Bounce": T.BOUNCED,
    "SpamComplaint": T.COMPLAINED,
    "Open": T.OPENED,
    "Click": T.CLICKED,
    "SubscriptionChange": T.UNSUBSCRIBED,
}
# Bounce `Type` -> our type (Postmark's bounce-type table). Only certain, permanent refusals
# are hard bounces; notices that are not about delivery (auto-replies...) stay unknown.
BOUNCE_TYPES: dict[str, ProviderEventType] = {
    "HardBounce": T.BOUNCED,
    "BadEmailAddress": T.BOUNCED,
    "SoftBounce": T.SOFT_BOUNCED,
    "DnsError": T.SOFT_BOUNCED,
    "Blocked": T.SOFT_BOUNCED,  # the receiving ISP blocked the message (often content or IP)
    "Transient": T.DEFERRED,  # Postmark keeps retrying
    "SpamComplaint": T.COMPLAINED,
    "SpamNotification": T.UNKNOWN,  # the receiver flagged it as spam; not the recipient's act
    "Unsubscribe": T.UNSUBSCRIBED,
    "ManuallyDeactivated": T.REJECTED,  # Postmark will not send to a deactivated address
    "Unconfirmed": T.REJECTED,
    "DMARCPolicy": T.FAILED,  # our sending domain's policy, not the recipient's address
    "SMTPApiError": T.FAILED,
    "TemplateRenderingFailed": T.FAILED,
    "VirusNotification": T.FAILED,
    "AutoResponder": T.UNKNOWN,
    "AddressChange": T.UNKNOWN,
    "ChallengeVerification": T.UNKNOWN,
    "OpenRelayTest": T.UNKNOWN,
    "Subscribe": T.UNKNOWN,
    "InboundError": T.UNKNOWN,
    "Unknown": T.UNKNOWN,
}
# SubscriptionChange with SuppressSending=true: why Postmark now suppresses the address.
SUPPRESSION_REASONS: dict[str, ProviderEventType] = {
    "HardBounce": T.BOUNCED,
    "SpamComplaint": T.COMPLAINED,
    "ManualSuppression": T.UNSUBSCRIBED,  # the recipient unsubscribed (or we suppressed them)
}
# When the event happened, by record type.
_TIME_FIELDS = ("DeliveredAt", "BouncedAt", "ReceivedAt", "ChangedAt")


def verify(request: InboundRequest, *, secret: str | None, now: datetime | None = None) -> None:
    """Check the webhook URL's credentials; ``now`` is unused (Postmark sends no timestamp)."""
    verify_shared_secret(request, secret=require_secret(secret, NAME))


def _kind(record: dict[str, Any]) -> ProviderEventType:
    record_type = str(record.get("RecordType", ""))
    if record_type == "Bounce":
        return BOUNCE_TYPES.get(str(record.get("Type", "")), T.UNKNOWN)
    if record_type == "SubscriptionChange":
        if not record.get("SuppressSending"):
            return T.UNKNOWN  # a reactivation: nothing to record against a send
        return SUPPRESSION_REASONS.get(str(record.get("SuppressionReason", "")), T.UNSUBSCRIBED)
    return RECORD_TYPES.get(record_type, T.UNKNOWN)


def parse(request: InboundRequest) -> list[ProviderEvent]:
    """The one event in a Postmark webhook; raises InboundPayloadError for other bodies."""
    record = request.json()
    if not isinstance(record, dict) or "RecordType" not in record:
        raise InboundPayloadError("A Postmark webhook body is a JSON object with RecordType.")
    metadata = object_or_empty(record.get("Metadata"))
    occurred = next((record[f] for f in _TIME_FIELDS if record.get(f)), None)
    # bounce and spam-complaint records carry an ID; a complaint about a message can share
    # the ID of its bounce record, so the record type is part of the event's identity
    bounce_id = record.get("ID")
    details = text_or_none(record.get("Details"))
    return [
        ProviderEvent(
            type=_kind(record),
            provider=NAME,
            provider_message_id=text_or_none(record.get("MessageID")),
            recipient=text_or_none(record.get("Email")) or text_or_none(record.get("Recipient")),
            occurred_at=parse_timestamp(occurred),
            event_id=(
                f"{record.get('RecordType')}:{bounce_id}" if bounce_id else stable_event_id(record)
            ),
            reason=details or text_or_none(record.get("Description")),
            bounce_code=enhanced_status_code(details),
            error_code=text_or_none(record.get("TypeCode")),
            url=text_or_none(record.get("OriginalLink")),
            user_agent=text_or_none(record.get("UserAgent")),
            delivery_ref=text_or_none(metadata.get(DELIVERY_REF_KEY)),
            raw=record,
        )
    ]
