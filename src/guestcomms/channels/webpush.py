"""Web Push: an encrypted push message to a browser's push subscription (RFC 8030).

Request: ``POST <subscription endpoint>`` (an absolute URL at the browser's push service) with
the JSON notification ``{"title", "body", "url"?, "data"?}`` encrypted for the subscription's
``p256dh`` key and ``auth`` secret per RFC 8291 (``Content-Encoding: aes128gcm``, RFC 8188),
and a VAPID (RFC 8292) ``Authorization: vapid t=<ES256 JWT>,k=<public key>`` whose JWT names
the push service's origin (``aud``), our contact (``sub``: mailto: or https:) and an expiry.
``TTL`` and ``Urgency`` say how long the push service may hold the message and how eagerly the
device should wake for it.

The encryption and the JWT come from pywebpush's building blocks (``WebPusher.encode`` and
``py_vapid.Vapid``); the request goes out on our aiohttp session, never through pywebpush's
synchronous ``requests`` send.

Answer: ``201 Created`` (some services ``202``); the ``Location`` header, when present, is the
provider id. Classification (beyond the base table in :mod:`guestcomms.channels.http`):

    404, 410   PermanentProviderError, code ``subscription_expired``: the browser unsubscribed
               or the subscription expired; it must be removed from the contact
    403        PermanentProviderError, code ``vapid_mismatch``: the subscription was made for
               another VAPID key (the provider stays usable for the other subscriptions)
    413        PermanentProviderError, code ``payload_too_large``
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from typing import Any, Self
from urllib.parse import urlsplit

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid, VapidException  # type: ignore[import-untyped]
from pywebpush import WebPusher, WebPushException  # type: ignore[import-untyped]

from guestcomms.channels.base import (
    Capabilities,
    OutgoingPush,
    PermanentProviderError,
    ProviderError,
)
from guestcomms.channels.http import (
    HttpProvider,
    HttpRequest,
    HttpResponse,
    common_options,
    require_setting,
)
from guestcomms.domain.enums import Channel
from guestcomms.errors import ConfigError

__all__ = ["MAX_RECORD_BYTES", "VAPID_TOKEN_SECONDS", "WebPushProvider", "load_vapid_key"]

CONTENT_ENCODING = "aes128gcm"
MAX_RECORD_BYTES = 4096  # the encrypted body every push service must accept (RFC 8291 §4)
VAPID_TOKEN_SECONDS = 12 * 3600  # a VAPID JWT's lifetime (RFC 8292 allows at most 24 h)
VAPID_REUSE_MARGIN_SECONDS = 3600  # sign a fresh JWT when less than this is left
MAX_CACHED_AUDIENCES = 256  # push-service origins whose signed JWT is kept
URGENCIES = frozenset({"very-low", "low", "normal", "high"})  # RFC 8030 §5.3
_EXPIRED_STATUSES = frozenset({404, 410})
_CHECK_AUDIENCE = "https://push.example.com"  # signs once at start-up to validate the subject


def load_vapid_key(private_key: str) -> Any:
    """A ``py_vapid.Vapid`` for a P-256 private key given as PEM, base64url DER, or the
    base64url raw 32-byte scalar (what ``vapid --gen`` and most guides print).

    Raises :class:`ConfigError` naming ``vapid_private_key`` when it is none of these.
    """
    try:
        if "-----BEGIN" in private_key:
            key = serialization.load_pem_private_key(private_key.encode("ascii"), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
                key.curve, ec.SECP256R1
            ):
                raise ConfigError("webpush: setting 'vapid_private_key' must be a P-256 key")
            return Vapid(private_key=key)
        return Vapid.from_string(private_key=private_key.strip())
    except (ValueError, TypeError, binascii.Error, UnicodeError, VapidException) as e:
        raise ConfigError(
            "webpush: setting 'vapid_private_key' is not a P-256 private key "
            "(PEM, or base64url raw or DER)"
        ) from e


class WebPushProvider(HttpProvider[OutgoingPush]):
    """Send Web Push notifications, encrypted (RFC 8291) and VAPID-signed (RFC 8292)."""

    name = "webpush"
    channel = Channel.PUSH
    capabilities = Capabilities(max_batch_size=1)

    def __init__(self, *, vapid_private_key: str, vapid_subject: str, **options: Any) -> None:
        """``options`` are :class:`HttpProvider`'s; no base URL is needed, as each
        subscription names its push service. Raises :class:`ConfigError` for a bad key or
        a subject that is not ``mailto:`` or ``https:``."""
        super().__init__(**options)
        if not vapid_subject.startswith(("mailto:", "https:")):
            raise ConfigError("webpush: setting 'vapid_subject' must be a mailto: or https: URL")
        self._vapid = load_vapid_key(vapid_private_key)
        self._subject = vapid_subject
        try:  # py_vapid checks the subject's shape when it signs: fail now, not per send
            self._vapid.sign({"sub": vapid_subject, "aud": _CHECK_AUDIENCE})
        except VapidException as e:
            raise ConfigError(f"webpush: setting 'vapid_subject' is invalid: {e}") from e
        self._authorizations: dict[str, tuple[str, float]] = {}  # origin -> (header, exp)

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, session: aiohttp.ClientSession | None
    ) -> Self:
        """Build from ``{"vapid_private_key", "vapid_subject", "timeout_seconds"?, ...}``."""
        options = common_options(config, provider=cls.name)
        options.pop("base_url", None)  # each subscription carries its absolute endpoint
        return cls(
            vapid_private_key=require_setting(config, "vapid_private_key", provider=cls.name),
            vapid_subject=require_setting(config, "vapid_subject", provider=cls.name),
            session=session,
            **options,
        )

    @property
    def public_key(self) -> str:
        """The VAPID public key, base64url: the ``applicationServerKey`` browsers subscribe
        with."""
        raw = self._vapid.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return _b64url(raw)

    def build_request(self, item: OutgoingPush) -> HttpRequest:
        """The encrypted, VAPID-signed POST to the item's subscription endpoint.

        Raises :class:`PermanentProviderError` (code ``invalid_subscription``) for a
        subscription without an http(s) endpoint or keys, or with keys that do not parse;
        ``payload_too_large`` when the encrypted message exceeds 4096 bytes.
        """
        subscription = item.subscription
        endpoint = subscription.endpoint or ""
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PermanentProviderError(
                "the push subscription has no http(s) endpoint", code="invalid_subscription"
            )
        if not (subscription.p256dh and subscription.auth):
            raise PermanentProviderError(
                "the push subscription lacks its p256dh or auth key", code="invalid_subscription"
            )
        if item.urgency not in URGENCIES:
            raise PermanentProviderError(f"unknown push urgency {item.urgency!r}", code="urgency")
        body = self._encrypt(item, endpoint=endpoint)
        headers = {
            "Authorization": self._authorization(f"{parts.scheme}://{parts.netloc}"),
            "TTL": str(max(item.ttl_seconds, 0)),
            "Urgency": item.urgency,
            "Content-Encoding": CONTENT_ENCODING,
            "Content-Type": "application/octet-stream",
        }
        return HttpRequest("POST", endpoint, headers=headers, data=body)

    def extract_message_id(self, item: OutgoingPush, response: HttpResponse) -> str | None:
        """The push service's ``Location`` for the message, if it gave one."""
        return response.headers.get("Location")

    def classify(self, response: HttpResponse) -> ProviderError:
        """The module docstring's table; everything else as the base classifies it."""
        status = response.status
        detail = self.error_message(response)
        if status in _EXPIRED_STATUSES:
            return PermanentProviderError(
                f"HTTP {status}: the push subscription has expired or unsubscribed; remove the "
                f"subscription from the contact ({detail})",
                code="subscription_expired",
            )
        if status == 403:
            return PermanentProviderError(
                f"HTTP 403: the push service refused our VAPID key for this subscription "
                f"({detail})",
                code="vapid_mismatch",
            )
        if status == 413:
            return PermanentProviderError(
                f"HTTP 413: the push message is too large ({detail})", code="payload_too_large"
            )
        return super().classify(response)

    def _encrypt(self, item: OutgoingPush, *, endpoint: str) -> bytes:
        message: dict[str, Any] = {"title": item.title, "body": item.body}
        if item.url:
            message["url"] = item.url
        if item.data:
            message["data"] = dict(item.data)
        plaintext = json.dumps(message, separators=(",", ":")).encode("utf-8")
        info = {"endpoint": endpoint, "keys": {"p256dh": item.subscription.p256dh,
                                               "auth": item.subscription.auth}}  # fmt: skip
        try:
            encoded = WebPusher(info).encode(plaintext, content_encoding=CONTENT_ENCODING)
        except (WebPushException, ValueError, TypeError, binascii.Error) as e:
            raise PermanentProviderError(
                f"the push subscription's keys are invalid: {e}", code="invalid_subscription"
            ) from e
        body: bytes = encoded["body"]
        if len(body) > MAX_RECORD_BYTES:
            raise PermanentProviderError(
                f"the encrypted push message is {len(body)} bytes; push services accept "
                f"{MAX_RECORD_BYTES}",
                code="payload_too_large",
            )
        return body

    def _authorization(self, audience: str) -> str:
        # Signing is cheap but not free; one JWT per push service is reused for hours.
        now = time.time()
        cached = self._authorizations.get(audience)
        if cached is not None and cached[1] - now > VAPID_REUSE_MARGIN_SECONDS:
            return cached[0]
        expires = int(now) + VAPID_TOKEN_SECONDS
        claims = {"aud": audience, "sub": self._subject, "exp": expires}
        try:
            header: str = self._vapid.sign(claims)["Authorization"]
        except VapidException as e:  # an audience py_vapid will not sign (odd host syntax)
            raise PermanentProviderError(
                f"cannot sign VAPID for {audience}: {e}", code="invalid_subscription"
            ) from e
        if len(self._authorizations) >= MAX_CACHED_AUDIENCES:
            self._authorizations.clear()
        self._authorizations[audience] = (header, float(expires))
        return header


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
