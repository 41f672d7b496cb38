"""Mailgun: email through ``POST /v3/{domain}/messages``.

Request: HTTP Basic auth ``api:<api key>`` and form fields ``from``, ``to``, ``subject``,
``text``, ``html``; ``h:<Name>`` fields add headers (``h:Message-Id`` keeps our RFC 5322
Message-ID, ``h:Reply-To`` the reply address) and ``v:guestcomms_delivery_id`` is custom
data that Mailgun repeats as ``user-variables`` in every event webhook. The sending domain
is configured, or taken from the sender's address.

Answer: ``200 {"id": "<...@domain>", "message": "Queued. Thank you."}``; the ``id`` is the
provider id. Errors: 401 ``Forbidden`` (plain text) for a bad key, 400 ``{"message": ...}``
for a bad request, 429 and 5xx, classified by status. A 200 without an ``id`` (Mailgun
answers that way for a URL that is not an API endpoint) is a permanent error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self
from urllib.parse import quote

import aiohttp

from guestcomms.channels.base import Capabilities, OutgoingEmail, PermanentProviderError
from guestcomms.channels.http import (
    DELIVERY_ID_KEY,
    HttpProvider,
    HttpRequest,
    HttpResponse,
    basic_auth,
    common_options,
    email_headers,
    format_address,
    public_delivery_id,
    require_setting,
    split_address,
)
from guestcomms.domain.enums import Channel
from guestcomms.errors import ConfigError

__all__ = ["MailgunProvider"]

REGION_BASE_URLS = {"us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"}


class MailgunProvider(HttpProvider[OutgoingEmail]):
    """Send email through Mailgun's messages API."""

    name = "mailgun"
    channel = Channel.EMAIL
    capabilities = Capabilities(max_batch_size=1)
    default_base_url = REGION_BASE_URLS["us"]

    def __init__(self, *, api_key: str, domain: str | None = None, **options: Any) -> None:
        """``domain`` is the sending domain (default: the sender's); ``options`` are
        :class:`HttpProvider`'s (base_url, session, timeout, concurrency)."""
        super().__init__(**options)
        if domain is not None and "/" in domain:
            raise ConfigError(f"mailgun: invalid domain {domain!r}")
        self.domain = domain
        self._headers = {"Authorization": basic_auth("api", api_key)}

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, session: aiohttp.ClientSession | None
    ) -> Self:
        """Build from ``{"api_key": ..., "domain"?, "region"? ("us"/"eu"), "base_url"?, ...}``."""
        options = common_options(config, provider=cls.name)
        region = config.get("region")
        if region is not None and "base_url" not in options:
            if region not in REGION_BASE_URLS:
                raise ConfigError(f"mailgun: setting 'region' must be one of us, eu: {region!r}")
            options["base_url"] = REGION_BASE_URLS[region]
        domain = config.get("domain")
        return cls(
            api_key=require_setting(config, "api_key", provider=cls.name),
            domain=require_setting(config, "domain", provider=cls.name) if domain else None,
            session=session,
            **options,
        )

    def build_request(self, item: OutgoingEmail) -> HttpRequest:
        """The form fields for one email to one recipient."""
        domain = self.domain or split_address(item.sender)[1].rpartition("@")[2]
        fields: list[tuple[str, str]] = [
            ("from", item.sender),
            ("to", format_address(item.recipient, item.recipient_name)),
            ("subject", item.subject),
            ("text", item.text),
        ]
        if item.html is not None:
            fields.append(("html", item.html))
        fields.append(("h:Message-Id", item.message_id))
        if item.reply_to is not None:
            fields.append(("h:Reply-To", item.reply_to))
        fields.extend((f"h:{name}", value) for name, value in email_headers(item).items())
        fields.append((f"v:{DELIVERY_ID_KEY}", public_delivery_id(item)))
        url = f"{self.base_url}/v3/{quote(domain, safe='')}/messages"
        return HttpRequest("POST", url, headers=self._headers, form=fields)

    def extract_message_id(self, item: OutgoingEmail, response: HttpResponse) -> str | None:
        """Mailgun's id is the ``id`` of the JSON answer, angle brackets included."""
        payload = response.json()
        if isinstance(payload, dict) and isinstance(payload.get("id"), str):
            return str(payload["id"])
        raise PermanentProviderError(
            f"unexpected Mailgun answer (is base_url an API endpoint?): {response.text[:200]}"
        )
