"""Amazon SES events delivered through SNS: an SNS envelope whose ``Message`` is the SES event.

Both SES formats are read: classic notifications (``notificationType``) and event publishing
(``eventType``). Bounces, complaints, deliveries and delays name their recipients, and yield
one event per recipient; a notification that lists several gets ids ``{MessageId}:{address}``.

Verification is SNS's: an RSA signature (SHA1 for ``SignatureVersion`` 1, SHA256 for 2) over
the canonical string of the envelope's fields, checked with the certificate at
``SigningCertURL``. Fetching that certificate is network I/O, so :func:`verify` takes it from a
``certificates`` callable (URL -> PEM bytes). Production passes one that fetches over HTTPS and
caches by URL; :func:`check_certificate_url` runs first, so it is only ever asked for an
``https://sns.<region>.amazonaws.com/....pem`` URL. Tests pass a locally generated certificate.

``secret`` is the SNS topic ARN (several may be given, separated by spaces or commas): SNS
proves only that AWS sent the message, and anyone can publish signed messages from their own
topic, so the envelope's ``TopicArn`` must be one of ours. SNS re-sends a failed notification
unchanged for hours, so its ``Timestamp`` is not held to a tolerance; replays are harmless
because events are applied idempotently by ``event_id``.

Matching: every send sets the message tag ``guestcomms_delivery_id`` (and the
``X-Guestcomms-Delivery-Id`` header), found in ``mail.tags`` / ``mail.headers``;
``mail.messageId`` is the id the send API returned.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from guestcomms.channels.events import (
    DELIVERY_REF_HEADER,
    DELIVERY_REF_KEY,
    InboundPayloadError,
    InboundRequest,
    InboundSignatureError,
    ProviderEvent,
    ProviderEventType,
    object_or_empty,
    parse_timestamp,
    stable_event_id,
    text_or_none,
)
from guestcomms.channels.inbound.signing import require_secret

NAME = "ses"
CertificateSource = Callable[[str], bytes]  # SigningCertURL -> PEM certificate bytes
CERT_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")

# The envelope fields SNS signs, in order, by message Type ("Subject" only when present).
_CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
SIGNED_FIELDS: dict[str, tuple[str, ...]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": _CONFIRMATION_FIELDS,
    "UnsubscribeConfirmation": _CONFIRMATION_FIELDS,
}
SIGNATURE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}

T = ProviderEventType
# SES `eventType` / `notificationType` -> our type; Bounce is refined by bounceType below.
EVENT_TYPES: dict[str, ProviderEventType] = {
    "Send": T.SENT,  # SES accepted the request and will try to deliver
    "Delivery": T.DELIVERED,
    "Bounce": T.BOUNCED,
    "Complaint": T.COMPLAINED,
    "Reject": T.REJECTED,  # SES refused to send it (e.g. a virus); it never left
    "DeliveryDelay": T.DEFERRED,
    "Open": T.OPENED,
    "Click": T.CLICKED,
    "Rendering Failure": T.FAILED,  # a template send that could not be rendered
    "Subscription": T.UNSUBSCRIBED,  # a change through SES subscription management
    "Received": T.UNKNOWN,  # inbound email: not about a send
}
BOUNCE_TYPES: dict[str, ProviderEventType] = {
    "Permanent": T.BOUNCED,
    "Transient": T.SOFT_BOUNCED,
    "Undetermined": T.SOFT_BOUNCED,  # SES could not tell why: do not suppress on a guess
}
# The object holding each type's details, and (for per-recipient types) its recipient list.
DETAILS: dict[str, tuple[str, str | None]] = {
    "Send": ("send", None),
    "Delivery": ("delivery", "recipients"),
    "Bounce": ("bounce", "bouncedRecipients"),
    "Complaint": ("complaint", "complainedRecipients"),
    "Reject": ("reject", None),
    "DeliveryDelay": ("deliveryDelay", "delayedRecipients"),
    "Open": ("open", None),
    "Click": ("click", None),
    "Rendering Failure": ("failure", None),
    "Subscription": ("subscription", None),
}


def check_certificate_url(url: str) -> None:
    """Raise InboundSignatureError unless ``url`` is an SNS signing certificate on AWS."""
    parts = urlsplit(url)
    if not (
        parts.scheme == "https"
        and parts.netloc == parts.hostname  # no port, no credentials
        and CERT_HOST.match(parts.hostname or "")
        and parts.path.endswith(".pem")
    ):
        raise InboundSignatureError("The SNS SigningCertURL is not an Amazon SNS certificate.")


def canonical_string(envelope: dict[str, Any]) -> bytes:
    """The bytes SNS signs for this envelope: ``Name\\nvalue\\n`` for each signed field."""
    fields = SIGNED_FIELDS.get(str(envelope.get("Type")))
    if fields is None:
        raise InboundSignatureError("Unknown SNS message Type.")
    lines = [f"{name}\n{envelope[name]}\n" for name in fields if name in envelope]
    return "".join(lines).encode("utf-8")


def _envelope(request: InboundRequest) -> dict[str, Any]:
    envelope = request.json()
    if not isinstance(envelope, dict) or "Type" not in envelope:
        raise InboundPayloadError("An SNS request body is a JSON object with Type.")
    return envelope


def verify(
    request: InboundRequest,
    *,
    secret: str | None,
    now: datetime | None = None,
    certificates: CertificateSource | None = None,
) -> None:
    """Verify the SNS signature and that the topic is ours; raise InboundSignatureError."""
    topics = set(require_secret(secret, NAME).replace(",", " ").split())
    try:
        envelope = _envelope(request)
    except InboundPayloadError as e:
        raise InboundSignatureError("The SNS request carries no signature.") from e
    if envelope.get("TopicArn") not in topics:
        raise InboundSignatureError("The SNS message is not from a configured topic.")
    algorithm = SIGNATURE_HASHES.get(str(envelope.get("SignatureVersion")))
    cert_url = str(envelope.get("SigningCertURL", ""))
    if algorithm is None or not envelope.get("Signature"):
        raise InboundSignatureError("The SNS message is unsigned or uses an unknown version.")
    check_certificate_url(cert_url)
    if certificates is None:
        raise InboundSignatureError("No SNS certificate source is configured.")
    try:
        certificate = x509.load_pem_x509_certificate(certificates(cert_url))
        signature = base64.b64decode(str(envelope["Signature"]), validate=True)
    except (ValueError, binascii.Error) as e:
        raise InboundSignatureError("The SNS certificate or signature is unreadable.") from e
    moment = now or datetime.now(UTC)
    if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
        raise InboundSignatureError("The SNS signing certificate is not valid now.")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise InboundSignatureError("The SNS signing certificate is not an RSA certificate.")
    try:
        key.verify(signature, canonical_string(envelope), padding.PKCS1v15(), algorithm())
    except InvalidSignature as e:
        raise InboundSignatureError("The SNS signature does not match.") from e


def subscription_confirmation_url(request: InboundRequest) -> str | None:
    """The ``SubscribeURL`` to visit when this (verified) request confirms a subscription."""
    envelope = _envelope(request)
    if envelope.get("Type") != "SubscriptionConfirmation":
        return None
    return text_or_none(envelope.get("SubscribeURL"))


def _delivery_ref(mail: dict[str, Any]) -> str | None:
    tags = mail.get("tags")
    values = tags.get(DELIVERY_REF_KEY) if isinstance(tags, dict) else None
    if isinstance(values, list) and values:
        return text_or_none(values[0])
    headers = mail.get("headers")
    for header in headers if isinstance(headers, list) else []:
        if str(object_or_empty(header).get("name", "")).lower() == DELIVERY_REF_HEADER.lower():
            return text_or_none(header.get("value"))
    return None


def _recipients(name: str, *, detail: dict[str, Any], mail: dict[str, Any]) -> list[Any]:
    """Per-recipient items (dicts or addresses); one ``None`` when the event names nobody."""
    list_key = DETAILS.get(name, ("", None))[1]
    if list_key is not None:
        items = detail.get(list_key)
        return list(items) if isinstance(items, list) else []
    destination = mail.get("destination")
    destination = destination if isinstance(destination, list) else []
    # Opens, clicks and sends are per message; name the recipient only when there is one.
    return [destination[0] if len(destination) == 1 else None]


def _kind(name: str, detail: dict[str, Any]) -> ProviderEventType:
    kind = EVENT_TYPES.get(name, T.UNKNOWN)
    if kind is T.BOUNCED:
        return BOUNCE_TYPES.get(str(detail.get("bounceType", "")), T.SOFT_BOUNCED)
    return kind


def _reason(detail: dict[str, Any], item: dict[str, Any]) -> str | None:
    for value in (
        item.get("diagnosticCode"),
        detail.get("reason"),
        detail.get("errorMessage"),
        detail.get("complaintFeedbackType"),
        detail.get("delayType"),
    ):
        if text := text_or_none(value):
            return text
    return None


def _event(
    entry: Any, *, name: str, inner: dict[str, Any], event_id: str | None, sent_at: Any
) -> ProviderEvent:
    """One event for one recipient ``entry`` (an SES recipient object or an address)."""
    mail = object_or_empty(inner.get("mail"))
    detail = object_or_empty(inner.get(DETAILS.get(name, ("", None))[0]))
    item = object_or_empty(entry)
    address = text_or_none(item.get("emailAddress")) if item else text_or_none(entry)
    return ProviderEvent(
        type=_kind(name, detail),
        provider=NAME,
        provider_message_id=text_or_none(mail.get("messageId")),
        recipient=address,
        occurred_at=parse_timestamp(detail.get("timestamp") or mail.get("timestamp") or sent_at),
        event_id=event_id or stable_event_id(inner, address or ""),
        reason=_reason(detail, item),
        bounce_code=text_or_none(item.get("status")),
        url=text_or_none(detail.get("link")),
        user_agent=text_or_none(detail.get("userAgent")),
        delivery_ref=_delivery_ref(mail),
        raw=inner,
    )


def _address(entry: Any) -> str:
    return str(entry.get("emailAddress", "")) if isinstance(entry, dict) else str(entry)


def parse(request: InboundRequest) -> list[ProviderEvent]:
    """The SES events inside an SNS notification; no events for subscription messages."""
    envelope = _envelope(request)
    if envelope.get("Type") != "Notification":
        return []  # (un)subscription confirmations: see subscription_confirmation_url
    try:
        inner = json.loads(str(envelope.get("Message", "")))
    except ValueError as e:
        raise InboundPayloadError("The SNS Message is not an SES event.") from e
    if not isinstance(inner, dict):
        raise InboundPayloadError("The SNS Message is not an SES event.")
    name = str(inner.get("eventType") or inner.get("notificationType") or "")
    mail = object_or_empty(inner.get("mail"))
    detail = object_or_empty(inner.get(DETAILS.get(name, ("", None))[0]))
    recipients = _recipients(name, detail=detail, mail=mail)
    sns_id = text_or_none(envelope.get("MessageId"))
    events = []
    for entry in recipients:
        # The SNS MessageId is the event id; a notification naming several recipients yields
        # one event each, so each gets the id and its address.
        event_id = f"{sns_id}:{_address(entry)}" if sns_id and len(recipients) > 1 else sns_id
        events.append(
            _event(
                entry, name=name, inner=inner, event_id=event_id, sent_at=envelope.get("Timestamp")
            )
        )
    return events
