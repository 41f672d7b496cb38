"""Vonage (Nexmo) SMS API: text messages through ``POST /sms/json``.

API reference: https://developer.vonage.com/en/api/sms#send-an-sms and its response codes,
https://developer.vonage.com/en/messaging/sms/guides/troubleshooting-sms#sms-api-error-codes.

Settings (``from_config``): ``api_key``, ``api_secret``, and optionally ``sender`` (a number
or an alphanumeric sender id of up to 11 characters) and ``status_callback_url``, plus the
shared ``base_url``, ``timeout_seconds``, ``max_concurrency``.

Request: form fields ``api_key``, ``api_secret`` (Vonage authenticates in the body),
``from`` (the item's sender, else the configured one; a number without its ``+``), ``to``
(E.164 without the ``+``, validated and normalised here), ``text``, ``type=unicode`` when the
text needs UCS-2 (see :mod:`guestcomms.domain.sms`), ``client-ref`` and ``callback`` (the
item's or the configured status callback URL, when there is one).

1. Our delivery id: ``client-ref``, which Vonage echoes in every delivery receipt (see
   :mod:`guestcomms.channels.inbound.vonage`).
2. Provider id: ``messages[0]["message-id"]``. A long text is split by Vonage into parts,
   each listed in ``messages`` with its own id; the first one is the receipt's.
3. Errors: Vonage answers ``200`` even when it refuses a message; each part's ``status`` says
   why (the table below). The first part that failed decides the error: a retry resends the
   whole text. A non-200 answer (a gateway's 401, 429 or 5xx) is classified by status.
4. No idempotency key and no batch endpoint: one request per message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Self

import aiohttp
import structlog

from guestcomms.channels.base import (
    Capabilities,
    CredentialsError,
    OutgoingSms,
    PermanentProviderError,
    ProviderError,
    RateLimitedError,
    SendReceipt,
    TransientProviderError,
)
from guestcomms.channels.http import (
    HttpProvider,
    HttpRequest,
    HttpResponse,
    common_options,
    require_setting,
    retry_after_seconds,
)
from guestcomms.channels.twilio_sms import (
    callback_setting,
    checked_number,
    delivery_ref,
    with_segments,
)
from guestcomms.domain.enums import Channel
from guestcomms.domain.sms import SmsEncoding, SmsSegments, segments

__all__ = ["STATUSES", "VonageSmsProvider"]

log = structlog.get_logger("guestcomms.channels.vonage")

MAX_REQUESTS_PER_SECOND = 30.0  # Vonage's documented default throughput per API key
_PHONE_NUMBER = re.compile(r"\+\d{6,15}")  # a numeric sender, sent without its "+"
_OK = "0"

# Vonage `status` of a message part -> our error class. A status not listed is permanent.
STATUSES: dict[str, type[ProviderError]] = {
    "1": RateLimitedError,  # throttled: over the account's submission rate
    "2": PermanentProviderError,  # missing parameters
    "3": PermanentProviderError,  # invalid parameters (e.g. a malformed number)
    "4": CredentialsError,  # invalid credentials: api_key / api_secret refused
    "5": TransientProviderError,  # internal error at Vonage
    "6": PermanentProviderError,  # invalid message: Vonage cannot route it
    "7": PermanentProviderError,  # the destination number is barred
    "8": PermanentProviderError,  # partner account barred
    "9": PermanentProviderError,  # partner quota violation: not enough credit
    "10": TransientProviderError,  # too many existing binds (a capacity limit)
    "11": PermanentProviderError,  # the account is not enabled for the HTTP API
    "12": PermanentProviderError,  # message too long
    "14": CredentialsError,  # invalid signature
    "15": PermanentProviderError,  # invalid sender address
    "22": PermanentProviderError,  # invalid network code
    "23": PermanentProviderError,  # invalid callback URL
    "29": PermanentProviderError,  # non-whitelisted destination (a demo account)
    "32": CredentialsError,  # signed requests only: the api_secret may not be used
    "33": PermanentProviderError,  # the destination number has been deactivated
}


class VonageSmsProvider(HttpProvider[OutgoingSms]):
    """Send SMS through Vonage's SMS API (see the module docstring)."""

    name = "vonage_sms"
    channel = Channel.SMS
    capabilities = Capabilities(max_batch_size=1, max_per_second=MAX_REQUESTS_PER_SECOND)
    default_base_url = "https://rest.nexmo.com"

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        sender: str | None = None,
        status_callback_url: str | None = None,
        **options: Any,
    ) -> None:
        """``sender`` is the default ``from``; ``status_callback_url`` the default receipt
        callback; ``options`` are :class:`HttpProvider`'s (base_url, session, timeout...)."""
        super().__init__(**options)
        self._credentials = [("api_key", api_key), ("api_secret", api_secret)]
        self.sender = sender
        self.status_callback_url = status_callback_url
        self._url = f"{self.base_url}/sms/json"
        self._headers = {"Accept": "application/json"}

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, session: aiohttp.ClientSession | None
    ) -> Self:
        """Build from ``{"api_key", "api_secret", "sender"?, "status_callback_url"?,
        "base_url"?, ...}``."""
        sender = config.get("sender")
        callback = config.get("status_callback_url")
        return cls(
            api_key=require_setting(config, "api_key", provider=cls.name),
            api_secret=require_setting(config, "api_secret", provider=cls.name),
            sender=require_setting(config, "sender", provider=cls.name) if sender else None,
            status_callback_url=callback_setting(config, provider=cls.name) if callback else None,
            session=session,
            **common_options(config, provider=cls.name),
        )

    def build_request(self, item: OutgoingSms) -> HttpRequest:
        """The form for one message: credentials, from, to, text, type, client-ref."""
        sender = item.sender or self.sender
        if not sender:
            raise PermanentProviderError(
                f"{self.name}: no sender: set 'sender' or give the message a sender",
                code="no_sender",
            )
        if _PHONE_NUMBER.fullmatch(sender):
            sender = sender[1:]
        form = [
            *self._credentials,
            ("from", sender),
            ("to", checked_number(item.to)[1:]),
            ("text", item.body),
        ]
        if self.segments_of(item).encoding is SmsEncoding.UCS2:
            form.append(("type", "unicode"))
        form.append(("client-ref", delivery_ref(item)))
        callback = item.status_callback_url or self.status_callback_url
        if callback:
            form.append(("callback", callback))
        return HttpRequest("POST", self._url, headers=self._headers, form=form)

    async def send(self, item: OutgoingSms) -> SendReceipt:
        """Send one message; the receipt reports its encoding and segments (Vonage bills per
        segment)."""
        return with_segments(await super().send(item), item)

    @staticmethod
    def segments_of(item: OutgoingSms) -> SmsSegments:
        """The encoding and segment count of the item's body."""
        return segments(item.body)

    def extract_message_id(self, item: OutgoingSms, response: HttpResponse) -> str | None:
        """The first part's ``message-id``; raises the error of the first refused part."""
        payload = response.json()
        parts = payload.get("messages") if isinstance(payload, dict) else None
        if not isinstance(parts, list) or not parts or not isinstance(parts[0], dict):
            raise PermanentProviderError(
                f"unexpected Vonage answer: {response.text[:200]}", code="unexpected_answer"
            )
        for index, part in enumerate(parts):
            status = str(part.get("status", "")) if isinstance(part, dict) else ""
            if status != _OK:
                raise self._error(status, part, response, index=index, total=len(parts))
        message_id = parts[0].get("message-id")
        return str(message_id) if message_id else None

    def error_message(self, response: HttpResponse) -> str:
        """Vonage's own words: a problem+json ``title``/``detail``, else the usual shapes."""
        payload = response.json()
        if isinstance(payload, dict) and "title" in payload:
            detail = payload.get("detail")
            return f"{payload['title']}: {detail}" if detail else str(payload["title"])
        return super().error_message(response)

    def _error(
        self, status: str, part: Any, response: HttpResponse, *, index: int, total: int
    ) -> ProviderError:
        text = part.get("error-text", "") if isinstance(part, dict) else ""
        where = f" (part {index + 1} of {total})" if total > 1 else ""
        detail = f"Vonage status {status or '?'}{where}: {text}"
        error_class = STATUSES.get(status, PermanentProviderError)
        if error_class is RateLimitedError:
            return RateLimitedError(
                detail, retry_after_seconds=retry_after_seconds(response), code=status
            )
        return error_class(detail, code=status or None)
