"""Inbound provider events: the closed vocabulary, the request we verify, the event we emit.

Every provider webhook (SendGrid, Mailgun, Postmark, Resend, SES, Brevo, Twilio, Vonage) is
parsed by one module under :mod:`guestcomms.channels.inbound` into :class:`ProviderEvent`
values whose ``type`` is a :class:`ProviderEventType`. Names a provider sends that we do not
know become ``unknown``, and the provider's raw item is always kept in ``raw``.

How an event finds its delivery (the service that applies events does this, in this order):

1. ``delivery_ref``: our own delivery id, which every send attaches to the message under
   :data:`DELIVERY_REF_KEY` (SendGrid custom args, Mailgun ``user-variables``, Postmark
   ``Metadata``, Resend ``tags``, SES message tags, Brevo ``X-Mailin-custom``, Vonage
   ``client-ref``, a Twilio status-callback URL query parameter) or the
   :data:`DELIVERY_REF_HEADER` email header. Exact, and survives provider-side id changes.
2. ``(provider, sent_message_id or provider_message_id)`` against the id the send API returned,
   which the delivery stores. ``sent_message_id`` is set where the event's id is not the one the
   send returned (SendGrid: ``sg_message_id`` is the ``X-Message-Id`` plus a ``.filter...``
   suffix).

Events are applied idempotently by ``(provider, event_id)``: ``event_id`` is the provider's own
id for the event when it has one, else :func:`stable_event_id` of the raw item, so a replayed
payload yields the same id.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from guestcomms.errors import GuestcommsError

DELIVERY_REF_KEY = "guestcomms_delivery_id"  # custom-arg / metadata / tag name set on each send
DELIVERY_REF_HEADER = "X-Guestcomms-Delivery-Id"  # the same id as an email header

_ENHANCED_CODE = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")
_MILLISECONDS_EPOCH_FLOOR = 10**11  # epoch values above this are milliseconds, not seconds


class ProviderEventType(StrEnum):
    """What happened to a message, in our words, whatever the provider called it."""

    SENT = "sent"  # accepted or queued by the provider or the carrier; not yet an outcome
    DELIVERED = "delivered"
    BOUNCED = "bounced"  # a hard bounce: the address does not exist or refuses us for good
    SOFT_BOUNCED = "soft_bounced"  # refused this time (mailbox full, blocked); may work later
    DEFERRED = "deferred"  # delayed; the provider is still retrying
    COMPLAINED = "complained"  # marked as spam
    OPENED = "opened"
    CLICKED = "clicked"
    FAILED = "failed"  # not delivered, for a reason that is neither a bounce nor a refusal
    REJECTED = "rejected"  # the provider did not send it at all (suppressed, invalid, policy)
    UNSUBSCRIBED = "unsubscribed"  # the recipient opted out through the provider
    INBOUND_SMS = "inbound_sms"  # a text message a guest sent us
    UNKNOWN = "unknown"  # a provider event name we do not map (kept raw)


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """One normalised event from a provider webhook; ``raw`` is the provider's item, kept."""

    type: ProviderEventType
    provider: str
    provider_message_id: str | None = None
    recipient: str | None = None
    occurred_at: datetime | None = None  # always timezone-aware when set
    event_id: str | None = None  # the provider's event id, else stable_event_id(raw)
    reason: str | None = None
    bounce_code: str | None = None  # SMTP enhanced status code, e.g. "5.1.1"
    error_code: str | None = None  # the provider's own error code (Twilio 21610, Vonage 6, 550)
    url: str | None = None  # clicked
    user_agent: str | None = None  # opened / clicked
    text: str | None = None  # inbound SMS body (None for a media-only message)
    from_number: str | None = None  # inbound SMS sender; our sender id on an SMS receipt
    to_number: str | None = None  # inbound SMS: our number; on an SMS receipt: the recipient
    delivery_ref: str | None = None  # our delivery id, when the provider echoed it back
    sent_message_id: str | None = None  # the id the send API returned, if unlike the above
    opted_out: bool = False  # the recipient opted out (e.g. Twilio 21610, STOP)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def message_ids(self) -> tuple[str, ...]:
        """Ids to look the delivery up by, most specific first, without duplicates."""
        ids = (self.sent_message_id, self.provider_message_id)
        return tuple(dict.fromkeys(i for i in ids if i))


class InboundSignatureError(GuestcommsError):
    """The webhook request is unsigned or its signature does not verify."""

    status = 401
    slug = "bad-signature"
    title = "Bad signature"


class InboundPayloadError(GuestcommsError):
    """The webhook body could not be read as this provider's payload."""

    status = 422
    slug = "bad-payload"
    title = "Unreadable payload"


def _multidict(pairs: list[tuple[str, str]]) -> MultiDictProxy[str]:
    return MultiDictProxy(MultiDict(pairs))


@dataclass(frozen=True)
class InboundRequest:
    """A webhook request as the HTTP layer received it, before any parsing.

    ``url`` is the full URL the provider called (scheme, host, path and query), as Twilio
    signs it; behind a proxy the route rebuilds it from the forwarded headers. ``headers`` may
    be any mapping and is stored case-insensitively; ``query`` defaults to the URL's query.
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    query: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.headers, CIMultiDict | CIMultiDictProxy):
            object.__setattr__(self, "headers", CIMultiDictProxy(CIMultiDict(self.headers)))
        if not self.query:
            pairs = parse_qsl(urlsplit(self.url).query, keep_blank_values=True)
            object.__setattr__(self, "query", _multidict(pairs))

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-cased ("" when absent)."""
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()

    @cached_property
    def form(self) -> MultiDictProxy[str]:
        """The body parsed as application/x-www-form-urlencoded, in order, repeats kept."""
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InboundPayloadError("The form body is not UTF-8.") from e
        return _multidict(parse_qsl(text, keep_blank_values=True))

    def json(self) -> Any:
        """The body parsed as JSON; raises InboundPayloadError when it is not JSON."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as e:
            raise InboundPayloadError("The body is not valid JSON.") from e


def stable_event_id(raw: Any, *parts: str) -> str:
    """A deterministic id for an event that carries none: a hash of its raw item (and parts)."""
    canonical = json.dumps([raw, *parts], sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def parse_timestamp(value: Any) -> datetime | None:
    """An aware UTC-or-offset datetime from epoch seconds/milliseconds or ISO 8601, else None.

    Naive ISO strings (Vonage's ``message-timestamp``) are taken as UTC.
    """
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and _is_number(value)):
        seconds = float(value)
        if seconds > _MILLISECONDS_EPOCH_FLOOR:
            seconds /= 1000
        return datetime.fromtimestamp(seconds, tz=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def enhanced_status_code(*texts: Any) -> str | None:
    """The first SMTP enhanced status code ("5.1.1") found in the given texts, if any."""
    for text in texts:
        if isinstance(text, str) and (match := _ENHANCED_CODE.search(text)):
            return match.group(1)
    return None


def object_or_empty(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty dict (payloads are not trusted)."""
    return value if isinstance(value, dict) else {}


def text_or_none(value: Any) -> str | None:
    """``value`` as a stripped string, or None when it is missing or blank."""
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text or None
