"""The provider protocol: what the worker hands a provider, and how a provider answers.

A provider gets fully rendered :class:`OutgoingEmail` items and answers, per item, either a
:class:`SendReceipt` (accepted) or a typed :class:`ProviderError` (never a bare bool):

    ProviderError
    ├── TransientProviderError   try again later (connection reset, 4xx SMTP reply, 5xx HTTP)
    │   └── RateLimitedError     try again after ``retry_after_seconds``
    └── PermanentProviderError   never retry (5xx SMTP reply, invalid recipient)

The worker retries only what is transient.
"""

from __future__ import annotations

import asyncio
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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
class SendReceipt:
    """A provider accepted the item; ``provider_message_id`` is its id for it, if any."""

    provider_message_id: str | None = None


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


SendResult = SendReceipt | ProviderError


class Provider(ABC):
    """Base class of every provider: owns batching; subclasses implement :meth:`send`.

    ``send_batch`` is what the worker calls. The default runs :meth:`send` for each item
    concurrently (bounded by ``max_concurrency``); a provider with a batch API overrides it.
    """

    name: str = "provider"
    channel: Channel = Channel.EMAIL
    max_batch_size: int = 1
    supports_idempotency_key: bool = False

    def __init__(self, *, max_concurrency: int = 32) -> None:
        self._limit = asyncio.Semaphore(max_concurrency)

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections or sessions; called once before the first send."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called once at shutdown."""

    @abstractmethod
    async def send(self, item: OutgoingEmail) -> SendReceipt:
        """Send one item; return a receipt or raise a :class:`ProviderError`."""

    async def send_batch(self, items: Sequence[OutgoingEmail]) -> list[SendResult]:
        """Send every item; return one result per item, in order. Never raises for an item."""
        return list(await asyncio.gather(*(self._send_one(item) for item in items)))

    async def _send_one(self, item: OutgoingEmail) -> SendResult:
        async with self._limit:
            try:
                return await self.send(item)
            except ProviderError as e:
                return e
            except (OSError, TimeoutError) as e:
                return TransientProviderError(f"{type(e).__name__}: {e}")
