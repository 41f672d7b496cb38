"""Inbound provider webhooks: one module per provider, each a verifier and a parser.

The route ``POST /v1/inbound/{provider}/{org}`` builds an :class:`InboundRequest`, looks the
provider up with :func:`get_parser`, calls ``verify`` with that organization's secret for the
provider (a request that is unsigned or badly signed raises ``InboundSignatureError``, 401,
and changes nothing), then ``parse`` (an unreadable body raises ``InboundPayloadError``, 422),
and applies the events idempotently by ``(provider, event_id)``.

What ``secret`` is, per provider (each module's docstring says more):

=========  ==========================================================================
sendgrid   the signed event webhook's verification key (base64 DER or PEM public key)
mailgun    the HTTP webhook signing key
postmark   ``user:password`` of the webhook URL's Basic credentials (or a bearer token)
resend     the webhook signing secret, ``whsec_...`` (Svix / Standard Webhooks)
ses        our SNS topic ARN(s); the signature is checked with the SNS certificate
brevo      ``user:password`` of the webhook URL's Basic credentials, or its bearer token
twilio     the account auth token
vonage     the signature secret, optionally ``<method>:`` prefixed (md5hash, sha256...)
=========  ==========================================================================

A ``None`` or empty secret never verifies: every verifier fails closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Protocol

from guestcomms.channels.events import InboundRequest, ProviderEvent
from guestcomms.channels.inbound import (
    brevo,
    mailgun,
    postmark,
    resend,
    sendgrid,
    ses,
    twilio,
    vonage,
)
from guestcomms.errors import NotFoundError


class InboundParser(Protocol):
    """What a provider module offers (a module satisfies this protocol by its functions)."""

    @property
    def NAME(self) -> str:  # noqa: N802 - a module-level constant in each provider module
        """The provider's name, as it appears in the webhook URL."""
        ...

    def verify(
        self, request: InboundRequest, *, secret: str | None, now: datetime | None = None
    ) -> None:
        """Raise InboundSignatureError unless the request is authentic and fresh."""
        ...

    def parse(self, request: InboundRequest) -> list[ProviderEvent]:
        """The request's events, normalised; raise InboundPayloadError if unreadable."""
        ...


# Listed with the protocol's type so that mypy checks each module against InboundParser.
_MODULES: tuple[InboundParser, ...] = (
    sendgrid,
    mailgun,
    postmark,
    resend,
    ses,
    brevo,
    twilio,
    vonage,
)
PARSERS: Mapping[str, InboundParser] = MappingProxyType({m.NAME: m for m in _MODULES})


class UnknownProviderError(NotFoundError):
    """No inbound webhook parser exists for this provider."""

    slug = "unknown-provider"
    title = "Unknown provider"


def get_parser(name: str) -> InboundParser:
    """The parser registered as ``name``; raises UnknownProviderError (404) otherwise."""
    try:
        return PARSERS[name]
    except KeyError:
        raise UnknownProviderError(f"No inbound webhook parser named {name!r}.") from None


__all__ = ["PARSERS", "InboundParser", "UnknownProviderError", "get_parser"]
