"""Outgoing webhooks: a signed HTTP POST to an organization's endpoint (Standard Webhooks).

Request (https://www.standardwebhooks.com/): ``POST <item.url>`` with the JSON body
``{"type": <event type>, "timestamp": <ISO 8601 UTC>, "data": <payload>}`` and the headers

    webhook-id          the delivery's idempotency key: the same on every retry, so the
                        receiver can drop a duplicate
    webhook-timestamp   Unix seconds at send time (receivers refuse old ones)
    webhook-signature   ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, one per
                        secret, space-separated: while a secret is being rotated both the old
                        and the new one sign, so a receiver holding either verifies

The signature comes from :func:`guestcomms.channels.inbound.signing.sign_standard_webhook`,
the same code that verifies the webhooks providers send us.

Answer: any 2xx is accepted (receivers give no id). Classification differs from the base
table where a receiver is not a provider API:

    2xx                  SendReceipt (no provider id)
    3xx                  PermanentProviderError: redirects are never followed (the receiver
                         must be configured with its final URL)
    401, 403             PermanentProviderError (the endpoint refused us; the webhook provider
                         itself stays usable for the organization's other endpoints)
    410                  PermanentProviderError, code ``endpoint_gone``: the endpoint was removed
    408, 425, 5xx        TransientProviderError
    429                  RateLimitedError after Retry-After
    other 4xx            PermanentProviderError
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping
from typing import Any, Self
from urllib.parse import urlsplit

import aiohttp

from guestcomms.channels.base import (
    Capabilities,
    OutgoingWebhook,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from guestcomms.channels.events import InboundSignatureError
from guestcomms.channels.http import (
    HttpProvider,
    HttpRequest,
    HttpResponse,
    checked_headers,
    common_options,
    refused,
)
from guestcomms.channels.inbound.signing import WHSEC_PREFIX, sign_standard_webhook
from guestcomms.domain.clock import utc_now
from guestcomms.domain.enums import Channel
from guestcomms.security.ssrf import ForbiddenTargetError

__all__ = ["SECRET_BYTES", "USER_AGENT", "WebhookProvider", "generate_secret"]

SECRET_BYTES = 24  # random bytes in a generated ``whsec_`` secret (192 bits)
USER_AGENT = "guestcomms"
_ALLOWED_SCHEMES = frozenset({"http", "https"})
_RECEIVER_REFUSALS = frozenset({401, 403})  # the endpoint's own auth, not our credentials


def generate_secret() -> str:
    """A new endpoint secret: ``whsec_`` + base64 of 24 random bytes."""
    return WHSEC_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


class WebhookProvider(HttpProvider[OutgoingWebhook]):
    """POST events to organizations' endpoints, signed per Standard Webhooks."""

    name = "webhook"
    channel = Channel.WEBHOOK
    capabilities = Capabilities(max_batch_size=1, supports_idempotency_key=True)

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, session: aiohttp.ClientSession | None
    ) -> Self:
        """Build from ``{"timeout_seconds"?, "max_concurrency"?}``; every setting is optional
        (the URL and secrets travel with each item)."""
        options = common_options(config, provider=cls.name)
        options.pop("base_url", None)  # each item carries its absolute URL
        return cls(session=session, **options)

    def build_request(self, item: OutgoingWebhook) -> HttpRequest:
        """The signed POST for ``item``, timestamped now.

        Raises :class:`PermanentProviderError` for a URL that is not absolute http(s), no
        secret, or a secret that is not ``whsec_<base64>``.
        """
        parts = urlsplit(item.url)
        if parts.scheme not in _ALLOWED_SCHEMES or not parts.hostname:
            raise PermanentProviderError(
                f"webhook URL must be an absolute http(s) URL, not {item.url!r}", code="bad_url"
            )
        if not item.secrets:
            raise PermanentProviderError("the webhook endpoint has no secret", code="no_secret")
        now = utc_now()
        timestamp = int(now.timestamp())
        envelope = {
            "type": item.event_type,
            "timestamp": now.isoformat().replace("+00:00", "Z"),
            "data": dict(item.payload),
        }
        body = json.dumps(envelope, separators=(",", ":"), default=str).encode("utf-8")
        try:
            signatures = " ".join(
                sign_standard_webhook(
                    secret=secret, msg_id=item.idempotency_key, timestamp=timestamp, body=body
                )
                for secret in item.secrets
            )
        except InboundSignatureError as e:
            raise PermanentProviderError(f"invalid webhook secret: {e}", code="bad_secret") from e
        headers = checked_headers(
            {
                "webhook-id": item.idempotency_key,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": signatures,
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
            }
        )
        return HttpRequest("POST", item.url, headers=headers, data=body)

    def extract_message_id(self, item: OutgoingWebhook, response: HttpResponse) -> str | None:
        """Receivers give no id; the ``webhook-id`` we sent is the item's idempotency key."""
        return None

    async def post(self, request: HttpRequest) -> HttpResponse:
        """Perform ``request`` without following redirects; read the whole answer.

        Raises :class:`TransientProviderError` when no answer arrives (as the base does).
        """
        # The base post follows redirects (aiohttp's default); a webhook must not, so that
        # a receiver cannot bounce our signed request to another host.
        session = self._ensure_session()
        try:
            async with session.request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.data,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                content = await response.read()
                return HttpResponse(response.status, response.headers, content)
        except ForbiddenTargetError as e:  # the SSRF guard: never retried
            raise refused(e) from e
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            detail = str(e) or "no answer"
            raise TransientProviderError(f"{type(e).__name__}: {detail}") from e

    def classify(self, response: HttpResponse) -> ProviderError:
        """The module docstring's table: redirects, 410 and the receiver's 401/403 are ours."""
        status = response.status
        code = str(status)
        if 300 <= status < 400:
            location = response.headers.get("Location", "(none)")
            return PermanentProviderError(
                f"HTTP {status}: the webhook endpoint redirects to {location}; redirects are "
                "not followed, so configure the endpoint's final URL",
                code=code,
            )
        if status == 410:
            return PermanentProviderError(
                f"HTTP 410: the webhook endpoint is gone (removed by its owner): "
                f"{self.error_message(response)}",
                code="endpoint_gone",
            )
        if status in _RECEIVER_REFUSALS:
            return PermanentProviderError(
                f"HTTP {status}: the webhook endpoint refused the request: "
                f"{self.error_message(response)}",
                code=code,
            )
        return super().classify(response)
