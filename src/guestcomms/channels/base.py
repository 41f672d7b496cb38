"""The provider protocol: what the worker hands a provider, and how a provider answers.

A provider gets fully rendered :class:`OutgoingEmail` items and answers, per item, either a
:class:`SendReceipt` (accepted) or a typed :class:`ProviderError` (never a bare bool):

    ProviderError
    ├── TransientProviderError   try again later (connection reset, 4xx SMTP reply, 5xx HTTP)
    │   └── RateLimitedError     try again after ``retry_after_seconds``
    └── PermanentProviderError   never retry (5xx SMTP reply, invalid recipient)
        └── CredentialsError     the provider refused our credentials (HTTP 401/403, SMTP 535):
                                 the provider is unusable until its configuration is fixed

The worker retries only what is transient. Each channel has its item type (``OutgoingEmail``,
``OutgoingSms``, ``OutgoingPush``, ``OutgoingCall``, ``OutgoingWebhook``,
``OutgoingInApp``); a provider is generic over the one it sends.
"""

from __future__ import annotations

import asyncio
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from guestcomms.channels.urgency import PrioritySlots
from guestcomms.domain.enums import Channel
from guestcomms.errors import GuestcommsError

MAX_ERROR_DETAIL_CHARS = 1000  # provider responses are capped before they are stored


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """One rendered email for one delivery, ready for a provider."""

    delivery_id: uuid.UUID
    organization_id: uuid.UUID
    idempotency_key: str
    message_id: str  # the RFC 5322 Message-ID, with angle brackets, stable per delivery
    sender: str  # the From header, e.g. "Ana & Ben <hello@example.com>"
    recipient: str  # the address only
    recipient_name: str | None
    subject: str
    text: str
    html: str | None = None
    reply_to: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutgoingSms:
    """One rendered text message for one delivery."""

    delivery_id: uuid.UUID
    organization_id: uuid.UUID
    idempotency_key: str
    to: str  # E.164
    body: str
    sender: str | None = None  # a number, alphanumeric sender id, or messaging service id
    status_callback_url: str | None = None


@dataclass(frozen=True, slots=True)
class OutgoingCall:
    """One voice call that reads ``say`` aloud (text to speech)."""

    delivery_id: uuid.UUID
    organization_id: uuid.UUID
    idempotency_key: str
    to: str  # E.164
    say: str
    sender: str | None = None
    language: str = "en-US"
    voice: str | None = None
    status_callback_url: str | None = None


@dataclass(frozen=True, slots=True)
class PushSubscription:
    """Where a push goes: a Web Push subscription (endpoint + keys) or an FCM device token."""

    endpoint: str | None = None  # Web Push
    p256dh: str | None = None
    auth: str | None = None
    fcm_token: str | None = None  # Firebase Cloud Messaging


@dataclass(frozen=True, slots=True)
class OutgoingPush:
    """One push notification to one subscription."""

    delivery_id: uuid.UUID
    organization_id: uuid.UUID
    idempotency_key: str
    subscription: PushSubscription
    title: str
    body: str
    url: str | None = None
    data: Mapping[str, str] = field(default_factory=dict)
    ttl_seconds: int = 86_400
    urgency: str = "normal"  # Web Push urgency: very-low, low, normal, high


@dataclass(frozen=True, slots=True)
class OutgoingWebhook:
    """One signed HTTP POST to an endpoint of the organization's."""

    delivery_id: uuid.UUID
    organization_id: uuid.UUID
    idempotency_key: str  # also the Standard Webhooks ``webhook-id``
    url: str
    secrets: Sequence[str]  # ``whsec_...``; several while a secret is being rotated
    event_type: str
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class OutgoingInApp:
    """One message for a contact's in-app inbox."""

    delivery_id: uuid.UUID
    organization_id: uuid.UUID
    idempotency_key: str
    contact_id: uuid.UUID
    title: str
    body: str
    url: str | None = None
    requires_ack: bool = False


OutgoingItem = (
    OutgoingEmail | OutgoingSms | OutgoingCall | OutgoingPush | OutgoingWebhook | OutgoingInApp
)
ItemT = TypeVar("ItemT", bound=OutgoingItem)


@dataclass(frozen=True, slots=True)
class SendReceipt:
    """A provider accepted the item; ``provider_message_id`` is its id for it, if any;
    ``detail`` is what the delivery's ``sent`` event should also record (SMS segments...)."""

    provider_message_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


class ProviderError(GuestcommsError):
    """A provider did not accept a send."""

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        message = (message or (self.__doc__ or "").strip())[:MAX_ERROR_DETAIL_CHARS]
        super().__init__(message)
        self.code = code


class TransientProviderError(ProviderError):
    """The provider failed in a way that may succeed if tried again."""


class RateLimitedError(TransientProviderError):
    """The provider asked us to slow down."""

    def __init__(
        self, message: str | None = None, *, retry_after_seconds: float, code: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after_seconds = retry_after_seconds


class PermanentProviderError(ProviderError):
    """The provider refused the send for good; trying again will not help."""


class CredentialsError(PermanentProviderError):
    """The provider refused our credentials; it cannot be used until they are fixed."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider can do, for the router and the worker."""

    max_batch_size: int = 1
    supports_idempotency_key: bool = False
    max_per_second: float | None = None  # the provider's documented ceiling, if any


SendResult = SendReceipt | ProviderError


class Provider(ABC, Generic[ItemT]):
    """Base class of every provider: owns batching; subclasses implement :meth:`send`.

    ``send_batch`` is what the worker calls. The default runs :meth:`send` for each item
    concurrently (bounded by ``max_concurrency``); a provider with a batch API overrides it.
    """

    name: str = "provider"
    channel: Channel = Channel.EMAIL
    capabilities: Capabilities = Capabilities()

    def __init__(self, *, max_concurrency: int = 32) -> None:
        # emergencies (see channels/urgency.py) take the next free slot ahead of bulk sends
        self._limit = PrioritySlots(max_concurrency)

    async def start(self) -> None:
        """Open connections or sessions; called once before the first send."""

    async def close(self) -> None:
        """Release connections; called once at shutdown."""

    @abstractmethod
    async def send(self, item: ItemT) -> SendReceipt:
        """Send one item; return a receipt or raise a :class:`ProviderError`."""

    async def send_batch(self, items: Sequence[ItemT]) -> list[SendResult]:
        """Send every item; return one result per item, in order. Never raises for an item."""
        return list(await asyncio.gather(*(self._send_one(item) for item in items)))

    async def _send_one(self, item: ItemT) -> SendResult:
        async with self._limit:
            try:
                return await self.send(item)
            except ProviderError as e:
                return e
            except (OSError, TimeoutError) as e:
                return TransientProviderError(f"{type(e).__name__}: {e}")
