"""Brevo (formerly Sendinblue) transactional webhooks: a JSON object (or an array of them).

Brevo does not sign webhooks. A webhook can carry HTTP Basic credentials in its URL or a
bearer token, so ``secret`` is ``user:password`` or that token (also accepted as a ``token``
query parameter; see :func:`signing.verify_shared_secret`).

Matching: every send sets the ``X-Mailin-custom`` header to a JSON object holding
``guestcomms_delivery_id``; Brevo echoes the header's value in each event. ``message-id`` is
the id the send API returned.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from guestcomms.channels.events import (
    DELIVERY_REF_KEY,
    InboundPayloadError,
    InboundRequest,
    ProviderEvent,
    ProviderEventType,
    enhanced_status_code,
    parse_timestamp,
    stable_event_id,
    text_or_none,
)
from guestcomms.channels.inbound.signing import require_secret, verify_shared_secret

NAME = "brevo"
CUSTOM_HEADER = "X-Mailin-custom"

T = ProviderEventType
# Brevo `event` -> our type. Trust the event name, not the reason text: a `deferred` event may
# quote a 550 from the receiving server and is still only deferred.
EVENT_TYPES: dict[str, ProviderEventType] = {
    "request": T.SENT,  # Brevo accepted the send
    "delivered": T.DELIVERED,
    "deferred": T.DEFERRED,
    "soft_bounce": T.SOFT_BOUNCED,
    "hard_bounce": T.BOUNCED,
    "invalid_email": T.BOUNCED,  # the address cannot exist; suppress like a hard bounce
    "blocked": T.REJECTED,  # not sent: the contact is blocklisted in Brevo
    "error": T.FAILED,
    "spam": T.COMPLAINED,
    "complaint": T.COMPLAINED,
    "opened": T.OPENED,
    "unique_opened": T.OPENED,
    "proxy_open": T.OPENED,  # an open seen through a mail-privacy proxy
    "unique_proxy_open": T.OPENED,
    "click": T.CLICKED,
    "unsubscribe": T.UNSUBSCRIBED,
    "unsubscribed": T.UNSUBSCRIBED,
}


def verify(request: InboundRequest, *, secret: str | None, now: datetime | None = None) -> None:
    """Check the webhook's credentials; ``now`` is unused (Brevo sends no timestamp)."""
    verify_shared_secret(request, secret=require_secret(secret, NAME))


def _delivery_ref(item: dict[str, Any]) -> str | None:
    custom = item.get(CUSTOM_HEADER)
    if isinstance(custom, str):
        try:
            custom = json.loads(custom)
        except ValueError:
            return None
    return text_or_none(custom.get(DELIVERY_REF_KEY)) if isinstance(custom, dict) else None


def _event(item: dict[str, Any]) -> ProviderEvent:
    reason = text_or_none(item.get("reason"))
    return ProviderEvent(
        type=EVENT_TYPES.get(str(item.get("event", "")), T.UNKNOWN),
        provider=NAME,
        provider_message_id=text_or_none(item.get("message-id")),
        recipient=text_or_none(item.get("email")),
        # ts_epoch is in milliseconds, ts in seconds; parse_timestamp tells them apart.
        occurred_at=parse_timestamp(item.get("ts_epoch") or item.get("ts") or item.get("date")),
        # Brevo's `id` names the webhook, not the event, so events get a hash of their item.
        event_id=stable_event_id(item),
        reason=reason,
        bounce_code=enhanced_status_code(reason),
        url=text_or_none(item.get("link")),
        user_agent=text_or_none(item.get("user_agent")),
        delivery_ref=_delivery_ref(item),
        raw=item,
    )


def parse(request: InboundRequest) -> list[ProviderEvent]:
    """One event per Brevo item; raises InboundPayloadError for other bodies."""
    payload = request.json()
    items = payload if isinstance(payload, list) else [payload]
    if not items or not all(isinstance(i, dict) and "event" in i for i in items):
        raise InboundPayloadError("A Brevo webhook body is a JSON object with an event.")
    return [_event(item) for item in items]
