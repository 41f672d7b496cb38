"""Twilio Programmable Messaging: SMS through ``POST /2010-04-01/Accounts/{sid}/Messages.json``.

API reference: https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource
and the error dictionary, https://www.twilio.com/docs/api/errors.

Settings (``from_config``): ``account_sid`` (``AC...``), ``auth_token``, and optionally
``sender`` (a number or alphanumeric sender id), ``messaging_service_sid`` (``MG...``),
``status_callback_url``, plus the shared ``base_url``, ``timeout_seconds``,
``max_concurrency``.

Request: HTTP Basic auth ``account_sid:auth_token``; form fields ``To`` (E.164, validated
and normalised here), ``From`` or ``MessagingServiceSid`` (the item's ``sender`` first, then
the configured service, then the configured sender), ``Body`` and ``StatusCallback``.

1. Our delivery id: Twilio has no metadata field, so it travels in the StatusCallback URL
   (the item's ``status_callback_url``, else the configured one) as the query parameter
   ``guestcomms_delivery_id=dlv_...``; Twilio signs the full URL and calls it back unchanged
   (see :mod:`guestcomms.channels.inbound.twilio`). No URL, no callback.
2. Provider id: the ``sid`` (``SM...``) of the ``201 Created`` JSON answer.
3. Errors: ``{"code", "message", "more_info", "status"}``. 429 and 5xx are classified by
   status; a 4xx by its Twilio ``code`` (the table below), else by status.
4. No idempotency key and no batch endpoint: one request per message.

:class:`TwilioProvider` holds what Messages and Calls share (account, auth, callback,
error codes); :class:`~guestcomms.channels.twilio_voice.TwilioVoiceProvider` is the other
subclass.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import structlog

from guestcomms.channels.base import (
    Capabilities,
    CredentialsError,
    ItemT,
    OutgoingCall,
    OutgoingSms,
    PermanentProviderError,
    ProviderError,
    RateLimitedError,
    SendReceipt,
)
from guestcomms.channels.http import (
    DELIVERY_ID_KEY,
    HttpProvider,
    HttpRequest,
    HttpResponse,
    basic_auth,
    common_options,
    require_setting,
    retry_after_seconds,
)
from guestcomms.domain.enums import Channel
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.domain.sms import SmsSegments, normalize_number, segments
from guestcomms.errors import ConfigError

__all__ = [
    "TWILIO_API_VERSION",
    "TwilioProvider",
    "TwilioSmsProvider",
    "callback_setting",
    "checked_number",
    "delivery_ref",
    "twilio_settings",
    "with_delivery_ref",
]

log = structlog.get_logger("guestcomms.channels.twilio")

TWILIO_API_VERSION = "2010-04-01"
_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")

# Twilio error code -> our error class, for 4xx answers (429 and 5xx go by status). A code
# not listed is classified by the HTTP status, keeping Twilio's code on the error.
_ERROR_CODES: dict[int, type[ProviderError]] = {
    20003: CredentialsError,  # authentication failed: wrong account SID or auth token
    20005: CredentialsError,  # the account is not active (suspended or closed)
    20429: RateLimitedError,  # too many requests
    14107: RateLimitedError,  # SMS send rate limit exceeded
    21211: PermanentProviderError,  # invalid 'To' phone number
    21408: PermanentProviderError,  # sending to this region is not enabled on the account
    21602: PermanentProviderError,  # message body is required
    21606: PermanentProviderError,  # 'From' is not an SMS-capable number of this account
    21608: PermanentProviderError,  # a trial account may only send to verified numbers
    21610: PermanentProviderError,  # the recipient unsubscribed (replied STOP)
    21612: PermanentProviderError,  # 'To' cannot be reached by SMS from this 'From'
    21614: PermanentProviderError,  # 'To' is not a mobile number
    21617: PermanentProviderError,  # the body exceeds 1600 characters
    30007: PermanentProviderError,  # filtered by the carrier as spam
}


def delivery_ref(item: OutgoingSms | OutgoingCall) -> str:
    """The item's delivery id in its public form (``dlv_<hex>``)."""
    return to_public(IdKind.DELIVERY, item.delivery_id)


def with_delivery_ref(url: str, ref: str) -> str:
    """``url`` with ``guestcomms_delivery_id=<ref>`` in its query (replacing any there)."""
    parts = urlsplit(url)
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != DELIVERY_ID_KEY
    ]
    query.append((DELIVERY_ID_KEY, ref))
    return urlunsplit(parts._replace(query=urlencode(query)))


def checked_number(value: str) -> str:
    """``value`` in E.164; :class:`PermanentProviderError` if it is not a valid number."""
    try:
        return normalize_number(value)
    except ValueError as e:
        raise PermanentProviderError(str(e), code="invalid_number") from e


def twilio_settings(config: Mapping[str, Any], *, provider: str) -> dict[str, Any]:
    """The settings every Twilio provider takes, as keyword arguments for its class."""
    account_sid = require_setting(config, "account_sid", provider=provider)
    if not _ACCOUNT_SID.fullmatch(account_sid):
        raise ConfigError(f"{provider}: setting 'account_sid' must look like AC followed by 32 hex")
    settings: dict[str, Any] = {
        "account_sid": account_sid,
        "auth_token": require_setting(config, "auth_token", provider=provider),
        **common_options(config, provider=provider),
    }
    if config.get("sender"):
        settings["sender"] = require_setting(config, "sender", provider=provider)
    if config.get("status_callback_url"):
        settings["status_callback_url"] = callback_setting(config, provider=provider)
    return settings


def callback_setting(config: Mapping[str, Any], *, provider: str) -> str:
    """The ``status_callback_url`` setting; :class:`ConfigError` unless an http(s) URL."""
    url = require_setting(config, "status_callback_url", provider=provider)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{provider}: setting 'status_callback_url' must be an http(s) URL")
    return url


class TwilioProvider(HttpProvider[ItemT]):
    """What Twilio's Messages and Calls providers share: account, auth, callback, errors."""

    default_base_url = "https://api.twilio.com"
    resource: ClassVar[str] = ""  # "Messages" or "Calls"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        sender: str | None = None,
        status_callback_url: str | None = None,
        **options: Any,
    ) -> None:
        """``sender`` is the default ``From``; ``status_callback_url`` the default callback;
        ``options`` are :class:`HttpProvider`'s (base_url, session, timeout, concurrency)."""
        super().__init__(**options)
        self.account_sid = account_sid
        self.sender = sender
        self.status_callback_url = status_callback_url
        self._headers = {
            "Authorization": basic_auth(account_sid, auth_token),
            "Accept": "application/json",
        }
        self._url = (
            f"{self.base_url}/{TWILIO_API_VERSION}/Accounts/{account_sid}/{self.resource}.json"
        )

    def request(self, form: list[tuple[str, str]]) -> HttpRequest:
        """The POST of ``form`` to this provider's resource."""
        return HttpRequest("POST", self._url, headers=self._headers, form=form)

    def status_callback(self, item: OutgoingSms | OutgoingCall) -> str | None:
        """The StatusCallback URL for ``item`` carrying its delivery id, or None."""
        url = item.status_callback_url or self.status_callback_url
        return with_delivery_ref(url, delivery_ref(item)) if url else None

    def extract_message_id(self, item: ItemT, response: HttpResponse) -> str | None:
        """Twilio's id is the ``sid`` of the 201; a 2xx without one is a permanent error."""
        payload = response.json()
        sid = payload.get("sid") if isinstance(payload, dict) else None
        if not isinstance(sid, str) or not sid:
            raise PermanentProviderError(
                f"unexpected Twilio answer without a sid: {response.text[:200]}"
            )
        return sid

    def classify(self, response: HttpResponse) -> ProviderError:
        """429 and 5xx by status; a 4xx by Twilio's ``code`` (the table), else by status."""
        fallback = super().classify(response)
        payload = response.json()
        if response.status >= 500 or response.status == 429 or not isinstance(payload, dict):
            return fallback
        code = payload.get("code")
        if not isinstance(code, int):
            return fallback
        detail = f"Twilio error {code}: {payload.get('message', '')}"
        error_class = _ERROR_CODES.get(code, type(fallback))
        if error_class is RateLimitedError:
            return RateLimitedError(
                detail, retry_after_seconds=retry_after_seconds(response), code=str(code)
            )
        return error_class(detail, code=str(code))


class TwilioSmsProvider(TwilioProvider[OutgoingSms]):
    """Send SMS through Twilio's Messages API (see the module docstring)."""

    name = "twilio_sms"
    channel = Channel.SMS
    capabilities = Capabilities(max_batch_size=1)
    resource = "Messages"

    def __init__(self, *, messaging_service_sid: str | None = None, **settings: Any) -> None:
        """``messaging_service_sid`` sends through a Messaging Service (its sender pool)
        rather than ``sender``; ``settings`` are :class:`TwilioProvider`'s."""
        super().__init__(**settings)
        self.messaging_service_sid = messaging_service_sid

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, session: aiohttp.ClientSession | None
    ) -> Self:
        """Build from ``{"account_sid", "auth_token", "sender"?, "messaging_service_sid"?,
        "status_callback_url"?, "base_url"?, ...}``."""
        settings = twilio_settings(config, provider=cls.name)
        service = config.get("messaging_service_sid")
        if service is not None and not (
            isinstance(service, str) and _MESSAGING_SERVICE_SID.fullmatch(service)
        ):
            raise ConfigError(
                f"{cls.name}: setting 'messaging_service_sid' must look like MG followed by 32 hex"
            )
        return cls(messaging_service_sid=service, session=session, **settings)

    def build_request(self, item: OutgoingSms) -> HttpRequest:
        """``To``, the sender, ``Body`` and ``StatusCallback`` as form fields."""
        form = [("To", checked_number(item.to)), self._sender_field(item), ("Body", item.body)]
        callback = self.status_callback(item)
        if callback is not None:
            form.append(("StatusCallback", callback))
        return self.request(form)

    async def send(self, item: OutgoingSms) -> SendReceipt:
        """Send one message; the receipt reports its encoding and segments (Twilio bills per
        segment)."""
        return with_segments(await super().send(item), item)

    @staticmethod
    def segments_of(item: OutgoingSms) -> SmsSegments:
        """The encoding and segment count of the item's body."""
        return segments(item.body)

    def _sender_field(self, item: OutgoingSms) -> tuple[str, str]:
        if item.sender:
            if _MESSAGING_SERVICE_SID.fullmatch(item.sender):
                return ("MessagingServiceSid", item.sender)
            return ("From", item.sender)
        if self.messaging_service_sid:
            return ("MessagingServiceSid", self.messaging_service_sid)
        if self.sender:
            return ("From", self.sender)
        raise PermanentProviderError(
            f"{self.name}: no sender: set 'sender' or 'messaging_service_sid', or give the "
            "message a sender",
            code="no_sender",
        )


def with_segments(receipt: SendReceipt, item: OutgoingSms) -> SendReceipt:
    """The receipt with the message's encoding and segment count, for its ``sent`` event."""
    counted = segments(item.body)
    log.debug(
        "provider.sms_sent",
        delivery_id=delivery_ref(item),
        provider_message_id=receipt.provider_message_id,
        encoding=str(counted.encoding),
        segments=counted.segments,
    )
    return dataclasses.replace(
        receipt,
        detail={**receipt.detail, "encoding": str(counted.encoding), "segments": counted.segments},
    )
