"""Resend: email through ``POST /emails``.

Request: ``Authorization: Bearer <api key>``, ``Idempotency-Key: <the delivery's key>``
(Resend answers a repeat within 24 hours with the first send's id instead of sending again,
so a retry after a lost answer cannot send twice), and a JSON body with ``from``, ``to``,
``subject``, ``text``, ``html``, ``reply_to``, ``headers`` and ``tags``. Our delivery id
travels as the tag ``guestcomms_delivery_id`` (tag values allow ASCII letters, digits, ``_``
and ``-``, which ``dlv_<hex>`` is), and Resend repeats tags in its webhooks.

Answer: ``200 {"id": "..."}``. Errors are ``{"statusCode", "name", "message"}``: 401
``missing_api_key``, 403 ``invalid_api_key``, 400/422 ``validation_error``, 429
``rate_limit_exceeded`` (with Retry-After), classified by status.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from email.header import Header
from typing import Any, Self

import aiohttp

from guestcomms.channels.base import Capabilities, OutgoingEmail
from guestcomms.channels.http import (
    DELIVERY_ID_KEY,
    HttpProvider,
    HttpRequest,
    HttpResponse,
    common_options,
    email_headers,
    format_address,
    public_delivery_id,
    require_setting,
)
from guestcomms.domain.enums import Channel

__all__ = ["ResendProvider"]

MAX_IDEMPOTENCY_KEY_CHARS = 256  # Resend refuses longer keys with 400


class ResendProvider(HttpProvider[OutgoingEmail]):
    """Send email through Resend's ``/emails`` API, idempotently."""

    name = "resend"
    channel = Channel.EMAIL
    capabilities = Capabilities(max_batch_size=1, supports_idempotency_key=True)
    default_base_url = "https://api.resend.com"

    def __init__(self, *, api_key: str, **options: Any) -> None:
        """``options`` are :class:`HttpProvider`'s (base_url, session, timeout, concurrency)."""
        super().__init__(**options)
        self._authorization = f"Bearer {api_key}"
        self._url = f"{self.base_url}/emails"

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, session: aiohttp.ClientSession | None
    ) -> Self:
        """Build from ``{"api_key": ..., "base_url"?, "timeout_seconds"?, ...}``."""
        return cls(
            api_key=require_setting(config, "api_key", provider=cls.name),
            session=session,
            **common_options(config, provider=cls.name),
        )

    def build_request(self, item: OutgoingEmail) -> HttpRequest:
        """The ``/emails`` body for one email, keyed by the delivery's idempotency key."""
        body: dict[str, Any] = {
            "from": item.sender,
            "to": [_recipient(item)],
            "subject": item.subject,
            "text": item.text,
            "tags": [{"name": DELIVERY_ID_KEY, "value": public_delivery_id(item)}],
        }
        if item.html is not None:
            body["html"] = item.html
        if item.reply_to is not None:
            body["reply_to"] = item.reply_to
        body["headers"] = email_headers(item)
        headers = {
            "Authorization": self._authorization,
            "Idempotency-Key": _idempotency_key(item.idempotency_key),
        }
        return HttpRequest("POST", self._url, headers=headers, json=body)

    def extract_message_id(self, item: OutgoingEmail, response: HttpResponse) -> str | None:
        """Resend's id is the ``id`` of the JSON answer."""
        payload = response.json()
        if isinstance(payload, dict) and isinstance(payload.get("id"), str):
            return str(payload["id"])
        return None


def _idempotency_key(key: str) -> str:
    # A key too long for Resend is replaced by its digest, which stays unique per delivery
    # (cutting it short could make two deliveries share a key).
    if len(key) <= MAX_IDEMPOTENCY_KEY_CHARS:
        return key
    return hashlib.sha256(key.encode()).hexdigest()


def _recipient(item: OutgoingEmail) -> str:
    # Resend refuses a quoted display name ("Zoe, S." <zoe@...>), which any name with a comma
    # or other special needs; an RFC 2047 encoded word carries the same name unquoted.
    formatted = format_address(item.recipient, item.recipient_name)
    if formatted.startswith('"') and item.recipient_name:
        encoded = Header(item.recipient_name, "utf-8").encode()
        formatted = format_address(item.recipient, encoded)
    return formatted
