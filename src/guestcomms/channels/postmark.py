"""Postmark: email through ``POST /email``, and batches through ``POST /email/batch``.

Request: header ``X-Postmark-Server-Token`` and a JSON message with ``From``, ``To``,
``Subject``, ``TextBody``, ``HtmlBody``, ``ReplyTo``, ``Headers`` (a list of Name/Value
pairs), ``MessageStream`` and ``Metadata`` carrying our ``guestcomms_delivery_id`` (Postmark
repeats Metadata in its webhooks). A batch is a JSON array of up to 500 such messages.

Answer: ``200 {"To", "SubmittedAt", "MessageID", "ErrorCode": 0, "Message": "OK"}``; the
``MessageID`` is the provider id. A batch answers 200 with one such object per message, in
order, each with its own ``ErrorCode``. Postmark says why a send failed in ``ErrorCode``
(HTTP 401 for a bad token, 422 for most refusals), so this provider classifies by that code
(the table below) and falls back to the HTTP status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, Self

import aiohttp

from guestcomms.channels.base import (
    Capabilities,
    CredentialsError,
    OutgoingEmail,
    PermanentProviderError,
    ProviderError,
    RateLimitedError,
    SendReceipt,
    SendResult,
    TransientProviderError,
)
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
    retry_after_seconds,
)
from guestcomms.domain.enums import Channel

__all__ = ["MAX_BATCH_MESSAGES", "PostmarkProvider"]

MAX_BATCH_MESSAGES = 500  # Postmark's limit per /email/batch request
DEFAULT_MESSAGE_STREAM = "outbound"  # Postmark's default transactional stream

# Postmark ErrorCode -> our error class; a code not listed is permanent. Codes that mean the
# account cannot send at all are CredentialsError: the provider is unusable until fixed.
_ERROR_CODES: dict[int, type[ProviderError]] = {
    10: CredentialsError,  # bad or missing server token
    100: TransientProviderError,  # maintenance
    300: PermanentProviderError,  # invalid email request (a field or address is wrong)
    400: PermanentProviderError,  # sender signature not found
    401: PermanentProviderError,  # sender signature not confirmed
    405: CredentialsError,  # not allowed to send (e.g. out of credits)
    406: PermanentProviderError,  # inactive recipient (hard bounce, complaint, suppression)
    412: CredentialsError,  # account pending approval
    413: CredentialsError,  # account may not send
    429: RateLimitedError,  # rate limit exceeded
}


class PostmarkProvider(HttpProvider[OutgoingEmail]):
    """Send email through Postmark's email API, up to 500 messages per request."""

    name = "postmark"
    channel = Channel.EMAIL
    capabilities = Capabilities(max_batch_size=MAX_BATCH_MESSAGES)
    default_base_url = "https://api.postmarkapp.com"

    def __init__(
        self, *, server_token: str, message_stream: str = DEFAULT_MESSAGE_STREAM, **options: Any
    ) -> None:
        """``options`` are :class:`HttpProvider`'s (base_url, session, timeout, concurrency)."""
        super().__init__(**options)
        self.message_stream = message_stream
        self._headers = {"X-Postmark-Server-Token": server_token, "Accept": "application/json"}

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, session: aiohttp.ClientSession | None
    ) -> Self:
        """Build from ``{"server_token": ..., "message_stream"?, "base_url"?, ...}``."""
        stream = config.get("message_stream") or DEFAULT_MESSAGE_STREAM
        return cls(
            server_token=require_setting(config, "server_token", provider=cls.name),
            message_stream=str(stream),
            session=session,
            **common_options(config, provider=cls.name),
        )

    def build_request(self, item: OutgoingEmail) -> HttpRequest:
        """One message to ``/email``."""
        url = f"{self.base_url}/email"
        return HttpRequest("POST", url, headers=self._headers, json=self.build_message(item))

    def build_message(self, item: OutgoingEmail) -> dict[str, Any]:
        """The Postmark JSON message for ``item`` (also one element of a batch)."""
        message: dict[str, Any] = {
            "From": item.sender,
            "To": format_address(item.recipient, item.recipient_name),
            "Subject": item.subject,
            "TextBody": item.text,
            "MessageStream": self.message_stream,
            "Metadata": {DELIVERY_ID_KEY: public_delivery_id(item)},
        }
        if item.html is not None:
            message["HtmlBody"] = item.html
        if item.reply_to is not None:
            message["ReplyTo"] = item.reply_to
        if item.headers:
            message["Headers"] = [
                {"Name": name, "Value": value} for name, value in email_headers(item).items()
            ]
        return message

    def extract_message_id(self, item: OutgoingEmail, response: HttpResponse) -> str | None:
        """Postmark's id is the ``MessageID`` of the answer; a non-zero ErrorCode raises."""
        payload = response.json()
        if not isinstance(payload, dict):
            return None
        result = self._result(payload, response)
        if isinstance(result, ProviderError):
            raise result
        return result.provider_message_id

    def classify(self, response: HttpResponse) -> ProviderError:
        """Classify by Postmark's ``ErrorCode`` when the body has one, else by status."""
        payload = response.json()
        code = payload.get("ErrorCode") if isinstance(payload, dict) else None
        if response.status >= 500 or not isinstance(code, int) or code == 0:
            return super().classify(response)
        return self._error(code, str(payload.get("Message", "")), response)

    async def send_batch(self, items: Sequence[OutgoingEmail]) -> list[SendResult]:
        """Send in requests of up to 500 messages; one result per item, in order."""
        results: list[SendResult | None] = [None] * len(items)
        pending: list[tuple[int, dict[str, Any]]] = []
        for index, item in enumerate(items):
            try:
                pending.append((index, self.build_message(item)))
            except ProviderError as e:
                results[index] = e
        chunks = [
            pending[start : start + MAX_BATCH_MESSAGES]
            for start in range(0, len(pending), MAX_BATCH_MESSAGES)
        ]
        await asyncio.gather(*(self._send_chunk(chunk, results) for chunk in chunks))
        return [r if r is not None else TransientProviderError("no result") for r in results]

    async def _send_chunk(
        self, chunk: list[tuple[int, dict[str, Any]]], results: list[SendResult | None]
    ) -> None:
        url = f"{self.base_url}/email/batch"
        request = HttpRequest(
            "POST", url, headers=self._headers, json=[message for _, message in chunk]
        )
        async with self._limit:
            try:
                response = await self.post(request)
            except ProviderError as e:
                for index, _ in chunk:
                    results[index] = e
                return
        payload = response.json() if 200 <= response.status < 300 else None
        if not isinstance(payload, list):
            error = (
                self.classify(response)
                if response.status >= 300
                else TransientProviderError(f"unexpected Postmark batch answer: {response.text}")
            )
            for index, _ in chunk:
                results[index] = error
            return
        for position, (index, _) in enumerate(chunk):
            entry = payload[position] if position < len(payload) else None
            results[index] = (
                self._result(entry, response)
                if isinstance(entry, dict)
                else TransientProviderError(
                    "Postmark's batch answer has no result for this message"
                )
            )

    def _result(self, entry: Mapping[str, Any], response: HttpResponse) -> SendResult:
        code = entry.get("ErrorCode", 0)
        if code == 0:
            message_id = entry.get("MessageID")
            return SendReceipt(provider_message_id=str(message_id) if message_id else None)
        if not isinstance(code, int):
            return TransientProviderError(f"unexpected Postmark ErrorCode {code!r}")
        return self._error(code, str(entry.get("Message", "")), response)

    def _error(self, code: int, message: str, response: HttpResponse) -> ProviderError:
        detail = f"Postmark ErrorCode {code}: {message}"
        error_class = _ERROR_CODES.get(code, PermanentProviderError)
        if error_class is RateLimitedError:
            return RateLimitedError(
                detail, retry_after_seconds=retry_after_seconds(response), code=str(code)
            )
        return error_class(detail, code=str(code))
