"""The HTTP provider base: owns the send flow of every provider that speaks an HTTP API.

A provider module fills in two steps and inherits the rest::

    send(item) = build_request(item) -> post(request) -> parse_response(item, response)
                                                          └── classify(response) unless 2xx

Classification lives here, in one place, so every provider answers the same way:

    2xx                                    SendReceipt(extract_message_id(...))
    429                                    RateLimitedError(retry_after_seconds from Retry-After,
                                           delta-seconds or HTTP-date; 1 s when absent)
    401, 403                               CredentialsError (the provider is unusable as configured)
    408, 425, 5xx                          TransientProviderError
    other 4xx                              PermanentProviderError (the provider's message, capped)
    connection refused/reset, timeout      TransientProviderError (raised ``from`` the cause)
    an address the SSRF guard refuses      PermanentProviderError, code ``ssrf_refused``
                                           (guestcomms.security.ssrf; never retried)

A provider whose API says more than the status (Postmark's ``ErrorCode``) overrides
:meth:`HttpProvider.classify`; one with a batch endpoint overrides ``send_batch``.

The HTTP session comes from the composition root (one ``aiohttp.ClientSession`` shared by the
providers of a worker), so tests point providers at the simulator; without one, the provider
opens its own in :meth:`~HttpProvider.start` and closes it in :meth:`~HttpProvider.close`.
"""

from __future__ import annotations

import base64
import json as jsonlib
import re
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formataddr, parseaddr
from functools import lru_cache
from typing import Any, ClassVar, Self
from urllib.parse import urlencode

import aiohttp

from guestcomms.channels.base import (
    MAX_ERROR_DETAIL_CHARS,
    CredentialsError,
    ItemT,
    OutgoingEmail,
    PermanentProviderError,
    Provider,
    ProviderError,
    RateLimitedError,
    SendReceipt,
    TransientProviderError,
)
from guestcomms.channels.events import DELIVERY_REF_HEADER, DELIVERY_REF_KEY
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.domain.ratelimit import parse_retry_after
from guestcomms.errors import ConfigError
from guestcomms.security.ssrf import ForbiddenTargetError, SsrfGuard

__all__ = [
    "DEFAULT_RETRY_AFTER_SECONDS",
    "DELIVERY_ID_HEADER",
    "DELIVERY_ID_KEY",
    "HttpProvider",
    "HttpRequest",
    "HttpResponse",
    "basic_auth",
    "checked_headers",
    "common_options",
    "config_number",
    "email_headers",
    "format_address",
    "public_delivery_id",
    "refused",
    "require_setting",
    "retry_after_seconds",
    "split_address",
]

# Our key in each provider's metadata field, and the email header carrying the same id; the
# inbound parsers (guestcomms.channels.inbound) read them back from the provider's events.
DELIVERY_ID_KEY = DELIVERY_REF_KEY
DELIVERY_ID_HEADER = DELIVERY_REF_HEADER
DEFAULT_RETRY_AFTER_SECONDS = 1.0  # a 429 without a usable Retry-After header
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
DEFAULT_TIMEOUT_SECONDS = 30.0  # one whole request: connect, send, read the answer
DEFAULT_MAX_CONCURRENCY = 32  # requests in flight per provider (and connections per host)
KEEPALIVE_SECONDS = 30.0  # an idle pooled connection is closed after this long
_TRANSIENT_STATUSES = frozenset({408, 425})  # request timeout, too early
_CREDENTIAL_STATUSES = frozenset({401, 403})
_ADDRESS_CACHE_SIZE = 1024  # distinct sender / reply-to values kept parsed
_LINE_BREAK = re.compile(r"[\r\n\x00]")  # never allowed in a header value we pass on


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request to a provider: a JSON body, form fields, or raw bytes (at most one)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    form: Sequence[tuple[str, str]] | None = None  # urlencoded; repeated names allowed
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A provider's answer, read in full."""

    status: int
    headers: Mapping[str, str]  # case-insensitive (aiohttp's CIMultiDictProxy)
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON; ``None`` when it is empty or not JSON."""
        if not self.body:
            return None
        try:
            return jsonlib.loads(self.body)
        except ValueError:
            return None

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced)."""
        return self.body.decode("utf-8", errors="replace")


class HttpProvider(Provider[ItemT]):
    """Base class of the providers that speak an HTTP API (see the module docstring).

    Subclasses set ``name``, ``channel``, ``capabilities`` and ``default_base_url`` and
    implement :meth:`build_request` and :meth:`extract_message_id`.
    """

    default_base_url: ClassVar[str] = ""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        guard: SsrfGuard | None = None,
    ) -> None:
        """Configure the provider; no connection is opened until the first request.

        ``guard`` vets the addresses of the session the provider opens itself; an injected
        ``session`` is guarded by whoever built it (the composition root's is).
        """
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        super().__init__(max_concurrency=max_concurrency)
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self._session = session
        self._owns_session = False
        self._max_concurrency = max_concurrency
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._guard = guard

    @classmethod
    @abstractmethod
    def from_config(
        cls, config: Mapping[str, Any], *, session: aiohttp.ClientSession | None
    ) -> Self:
        """Build the provider from a plain dict of its settings (each provider documents
        its keys); raise :class:`ConfigError` naming a missing or invalid setting."""

    async def start(self) -> None:
        """Open our own session unless the composition root gave us one."""
        self._ensure_session()

    async def close(self) -> None:
        """Close the session if we opened it; a shared one belongs to whoever gave it."""
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            self._owns_session = False
            await session.close()

    async def send(self, item: ItemT) -> SendReceipt:
        """Send one item; return a receipt or raise a :class:`ProviderError`."""
        request = self.build_request(item)
        response = await self.post(request)
        return self.parse_response(item, response)

    @abstractmethod
    def build_request(self, item: ItemT) -> HttpRequest:
        """Return the provider API request for ``item``.

        Raises :class:`PermanentProviderError` for an item the provider can never accept.
        """

    @abstractmethod
    def extract_message_id(self, item: ItemT, response: HttpResponse) -> str | None:
        """Return the provider's id for an accepted item, from a 2xx ``response``."""

    async def post(self, request: HttpRequest) -> HttpResponse:
        """Perform ``request`` and read the whole answer.

        Raises :class:`TransientProviderError` when no answer arrives (refused or dropped
        connection, timeout); an answer of any status is returned, not raised.
        """
        session = self._ensure_session()
        body: Any = request.data
        headers = request.headers
        if request.form is not None:
            # encoded here: aiohttp.FormData builds a multipart writer (with a random
            # boundary) for every request before it urlencodes, ~6% of an SMS send
            body = urlencode(list(request.form)).encode()
            headers = {**headers, "Content-Type": FORM_CONTENT_TYPE}
        try:
            async with session.request(
                request.method,
                request.url,
                headers=headers,
                json=request.json,
                data=body,
                timeout=self._timeout,
            ) as response:
                content = await response.read()
                return HttpResponse(response.status, response.headers, content)
        except ForbiddenTargetError as e:
            raise refused(e) from e
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            # ServerTimeoutError is both a ClientError and a TimeoutError; a total timeout
            # arrives as a bare TimeoutError; a reset between requests as ClientOSError.
            detail = str(e) or "no answer"
            raise TransientProviderError(f"{type(e).__name__}: {detail}") from e

    def parse_response(self, item: ItemT, response: HttpResponse) -> SendReceipt:
        """Return a receipt for a 2xx answer; raise what :meth:`classify` gives otherwise."""
        if 200 <= response.status < 300:
            return SendReceipt(provider_message_id=self.extract_message_id(item, response))
        raise self.classify(response)

    def classify(self, response: HttpResponse) -> ProviderError:
        """Map a non-2xx answer onto the provider error tree (the module docstring's table)."""
        status = response.status
        detail = f"HTTP {status}: {self.error_message(response)}"
        code = str(status)
        if status == 429:
            return RateLimitedError(
                detail, retry_after_seconds=retry_after_seconds(response), code=code
            )
        if status in _CREDENTIAL_STATUSES:
            return CredentialsError(detail, code=code)
        if status >= 500 or status in _TRANSIENT_STATUSES:
            return TransientProviderError(detail, code=code)
        return PermanentProviderError(detail, code=code)

    def error_message(self, response: HttpResponse) -> str:
        """The provider's own words for an error, from the usual JSON shapes or the text."""
        return _error_message(response)[:MAX_ERROR_DETAIL_CHARS]

    def _ensure_session(self) -> aiohttp.ClientSession:
        # Synchronous, so two first sends racing cannot both open a session.
        if self._session is None:
            options: dict[str, Any] = {
                "limit": self._max_concurrency,
                "limit_per_host": self._max_concurrency,
                "keepalive_timeout": KEEPALIVE_SECONDS,
            }
            connector = (
                aiohttp.TCPConnector(**options)
                if self._guard is None
                else self._guard.connector(**options)
            )
            self._session = aiohttp.ClientSession(connector=connector)
            self._owns_session = True
        return self._session


def refused(error: ForbiddenTargetError) -> PermanentProviderError:
    """The permanent failure for a request the SSRF guard refused (never retried)."""
    return PermanentProviderError(f"refused: {error.message}", code="ssrf_refused")


def retry_after_seconds(response: HttpResponse) -> float:
    """Seconds to wait from the ``Retry-After`` header (either RFC 9110 form), else 1 s."""
    value = response.headers.get("Retry-After")
    if value:
        seconds = parse_retry_after(value, now=datetime.now(UTC))
        if seconds is not None:
            return max(seconds, 0.0)
    return DEFAULT_RETRY_AFTER_SECONDS


def _error_message(response: HttpResponse) -> str:
    payload = response.json()
    if isinstance(payload, dict):
        # SendGrid: {"errors": [{"message": ..., "field": ...}]}
        errors = payload.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return "; ".join(str(e.get("message", e)) for e in errors if isinstance(e, dict))
        # FCM / Google: {"error": {"message": ...}}; OAuth: {"error": "invalid_grant"}
        error = payload.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        # Resend, Mailgun, Twilio: "message"; Postmark: "Message"
        for key in ("message", "Message", "error_description", "error"):
            if key in payload:
                return str(payload[key])
    return response.text.strip() or "(empty body)"


def basic_auth(username: str, password: str) -> str:
    """The ``Authorization`` header value for HTTP Basic auth (RFC 7617, UTF-8)."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def public_delivery_id(item: OutgoingEmail) -> str:
    """The item's delivery id in its public form (``dlv_<hex>``), as providers carry it."""
    return to_public(IdKind.DELIVERY, item.delivery_id)


@lru_cache(maxsize=_ADDRESS_CACHE_SIZE)
def split_address(value: str) -> tuple[str, str]:
    """Split ``"Ana & Ben <hello@example.com>"`` into ``("Ana & Ben", "hello@example.com")``.

    Raises :class:`PermanentProviderError` if ``value`` holds no address or a line break.
    """
    if _LINE_BREAK.search(value):
        raise PermanentProviderError(f"invalid address {value!r}: line break")
    name, address = parseaddr(value)
    if "@" not in address:
        raise PermanentProviderError(f"not an email address: {value!r}")
    return name, address


def format_address(address: str, name: str | None) -> str:
    """Format ``name <address>`` for a provider field, quoting or encoding the name."""
    if _LINE_BREAK.search(address) or (name and _LINE_BREAK.search(name)):
        raise PermanentProviderError(f"invalid address {address!r}: line break")
    return formataddr((name or "", address))


def checked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Return ``headers`` as a dict; :class:`PermanentProviderError` on a line break."""
    for name, value in headers.items():
        if _LINE_BREAK.search(name) or _LINE_BREAK.search(value):
            raise PermanentProviderError(f"header {name!r}: line breaks are not allowed")
    return dict(headers)


def email_headers(item: OutgoingEmail) -> dict[str, str]:
    """The item's extra headers plus ``X-Guestcomms-Delivery-Id`` (which a bounce message
    quotes back); :class:`PermanentProviderError` on a line break."""
    headers = checked_headers(item.headers)
    headers[DELIVERY_ID_HEADER] = public_delivery_id(item)
    return headers


def require_setting(config: Mapping[str, Any], key: str, *, provider: str) -> str:
    """Return the non-empty string ``config[key]``; :class:`ConfigError` naming it if not."""
    value = config.get(key)
    if value is None or value == "":
        raise ConfigError(f"{provider}: missing setting {key!r}")
    if not isinstance(value, str):
        raise ConfigError(f"{provider}: setting {key!r} must be a string")
    return value


def config_number(config: Mapping[str, Any], key: str, *, provider: str, default: float) -> float:
    """Return the positive number ``config[key]`` (or ``default``); ConfigError if not one."""
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{provider}: setting {key!r} must be a positive number")
    return float(value)


def common_options(config: Mapping[str, Any], *, provider: str) -> dict[str, Any]:
    """The settings every HTTP provider takes: ``base_url``, ``timeout_seconds``,
    ``max_concurrency``; as keyword arguments for :class:`HttpProvider`."""
    options: dict[str, Any] = {
        "timeout_seconds": config_number(
            config, "timeout_seconds", provider=provider, default=DEFAULT_TIMEOUT_SECONDS
        ),
        "max_concurrency": int(
            config_number(
                config, "max_concurrency", provider=provider, default=DEFAULT_MAX_CONCURRENCY
            )
        ),
    }
    if config.get("base_url"):
        options["base_url"] = require_setting(config, "base_url", provider=provider)
    return options
