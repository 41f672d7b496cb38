"""SendGrid: email through the v3 Mail Send API (``POST /v3/mail/send``).

Request: ``Authorization: Bearer <api key>`` and a JSON body with one personalization per
delivery (``to``, and ``custom_args`` carrying our ``guestcomms_delivery_id``, which SendGrid
copies into every event webhook), ``from``, ``subject``, ``content`` (text/plain first, then
text/html, as SendGrid requires) and extra ``headers``. SendGrid sets its own Message-ID, so
the delivery id in ``custom_args`` is what matches inbound events.

Answer: ``202 Accepted`` with an empty body; the ``X-Message-Id`` header is the provider id.
Errors are ``{"errors": [{"message", "field", "help"}]}``, classified by status in
:mod:`guestcomms.channels.http`.
"""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import quote
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
    public_delivery_id,
    require_setting,
    split_address,
)
from guestcomms.domain.enums import Channel

__all__ = ["SendGridProvider"]


class SendGridProvider(HttpProvider[OutgoingEmail]):
    """Send email through SendGrid's v3 Mail Send API."""

    name = "sendgrid"
    channel = Channel.EMAIL
    capabilities = Capabilities(max_batch_size=1)
    default_base_url = "https://api.sendgrid.com"

    def __init__(self, *, api_key: str, **options: Any) -> None:
        """``options`` are :class:`HttpProvider`'s (base_url, session, timeout, concurrency)."""
        super().__init__(**options)
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
        }
        self._url = f"{self.base_url}/v3/mail/send"

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
        """The Mail Send body for one email to one recipient."""
        from_name, from_address = split_address(item.sender)
        recipient: dict[str, str] = {"email": item.recipient}
        if item.recipient_name:
            recipient["name"] = _personalization_name(item.recipient_name)
        sender: dict[str, str] = {"email": from_address}
        if from_name:
            sender["name"] = from_name
        content = [{"type": "text/plain", "value": item.text}]
        if item.html is not None:
            content.append({"type": "text/html", "value": item.html})
        body: dict[str, Any] = {
            "personalizations": [
                {
                    "to": [recipient],
                    "custom_args": {DELIVERY_ID_KEY: public_delivery_id(item)},
                }
            ],
            "from": sender,
            "subject": item.subject,
            "content": content,
        }
        if item.reply_to is not None:
            reply_name, reply_address = split_address(item.reply_to)
            body["reply_to"] = {"email": reply_address}
            if reply_name:
                body["reply_to"]["name"] = reply_name
        body["headers"] = email_headers(item)
        return HttpRequest("POST", self._url, headers=self._headers, json=body)

    def extract_message_id(self, item: OutgoingEmail, response: HttpResponse) -> str | None:
        """SendGrid's id is the ``X-Message-Id`` header of the 202."""
        return response.headers.get("X-Message-Id")


def _personalization_name(name: str) -> str:
    # SendGrid does not quote a display name with a comma or semicolon in personalizations
    # (it does in "from" and "reply_to"), so the recipient would see a broken To header;
    # quoting it ourselves works around that.
    if "," in name or ";" in name:
        return f'"{quote(name)}"'
    return name
