"""Amazon SES through its SMTP interface: :class:`SmtpProvider` aimed at SES.

SES speaks SMTP at ``email-smtp.<region>.amazonaws.com``, port 587 with STARTTLS, and takes
SMTP credentials (made in the SES console; not the AWS access key pair). Two SES-specific
headers are added to each message and removed by SES before delivery:

- ``X-SES-CONFIGURATION-SET: <name>`` when a configuration set is configured, so SES
  publishes the message's events (delivery, bounce, complaint, open, click);
- ``X-SES-MESSAGE-TAGS: guestcomms_delivery_id=dlv_<hex>``, which SES repeats in every event
  it publishes, so inbound events are matched to the delivery. (Tag names and values may
  hold ASCII letters, digits, ``_`` and ``-``.)

Sending, pooling and classification are :class:`SmtpProvider`'s.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, Self

from guestcomms.channels.base import Capabilities, OutgoingEmail, SendReceipt
from guestcomms.channels.http import (
    DELIVERY_ID_HEADER,
    DELIVERY_ID_KEY,
    public_delivery_id,
    require_setting,
)
from guestcomms.channels.smtp import SmtpProvider
from guestcomms.config import SmtpSecurity
from guestcomms.domain.enums import Channel
from guestcomms.errors import ConfigError

__all__ = ["SesProvider", "ses_smtp_host"]

SES_SMTP_PORT = 587  # STARTTLS; SES also listens on 25 and 2587 (and 465/2465 for TLS)
CONFIGURATION_SET_HEADER = "X-SES-CONFIGURATION-SET"
MESSAGE_TAGS_HEADER = "X-SES-MESSAGE-TAGS"
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")  # e.g. eu-west-1
_CONFIGURATION_SET = re.compile(r"[A-Za-z0-9_-]{1,64}")


def ses_smtp_host(region: str) -> str:
    """The SES SMTP endpoint of ``region``; :class:`ConfigError` if it is not a region name."""
    if not _REGION.fullmatch(region):
        raise ConfigError(f"ses: setting 'region' is not an AWS region: {region!r}")
    return f"email-smtp.{region}.amazonaws.com"


class SesProvider(SmtpProvider):
    """Send email through Amazon SES's SMTP interface, tagging each message."""

    name = "ses"
    channel = Channel.EMAIL
    capabilities = Capabilities(max_batch_size=1)

    def __init__(
        self,
        *,
        region: str | None = None,
        host: str | None = None,
        port: int = SES_SMTP_PORT,
        username: str,
        password: str,
        configuration_set: str | None = None,
        security: SmtpSecurity = SmtpSecurity.STARTTLS,
        **smtp_options: Any,
    ) -> None:
        """Aim at ``region``'s endpoint (or ``host``, for tests and VPC endpoints).

        ``smtp_options`` go to :class:`SmtpProvider` (timeout_seconds, pool_size,
        validate_certs, tls_context).
        """
        if host is None:
            if region is None:
                raise ConfigError("ses: missing setting 'region'")
            host = ses_smtp_host(region)
        if configuration_set is not None and not _CONFIGURATION_SET.fullmatch(configuration_set):
            raise ConfigError(f"ses: invalid configuration set name {configuration_set!r}")
        super().__init__(
            host=host,
            port=port,
            username=username,
            password=password,
            security=security,
            **smtp_options,
        )
        self.configuration_set = configuration_set

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, session: object = None) -> Self:
        """Build from ``{"region", "username", "password", "configuration_set"?, "host"?,
        "port"?, "timeout_seconds"?, "pool_size"?}``; ``session`` is unused (SMTP)."""
        options: dict[str, Any] = {}
        for key in ("port", "timeout_seconds", "pool_size"):
            if key in config:
                options[key] = config[key]
        host = config.get("host")
        return cls(
            region=None if host else require_setting(config, "region", provider=cls.name),
            host=str(host) if host else None,
            username=require_setting(config, "username", provider=cls.name),
            password=require_setting(config, "password", provider=cls.name),
            configuration_set=config.get("configuration_set") or None,
            **options,
        )

    async def send(self, item: OutgoingEmail) -> SendReceipt:
        """Send ``item`` with the SES headers added; see :meth:`SmtpProvider.send`."""
        headers = dict(item.headers)
        headers[DELIVERY_ID_HEADER] = public_delivery_id(item)
        headers[MESSAGE_TAGS_HEADER] = f"{DELIVERY_ID_KEY}={public_delivery_id(item)}"
        if self.configuration_set is not None:
            headers[CONFIGURATION_SET_HEADER] = self.configuration_set
        return await super().send(dataclasses.replace(item, headers=headers))
