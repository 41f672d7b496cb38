"""Provider kinds by name: what an organization may configure in ``POST /v1/providers``.

Each kind maps to its channel and to the provider class whose ``from_config`` builds it from
one mapping (the account's settings merged with its credentials). Adding a provider is one
module and one line here (see docs/adding-a-provider.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

import aiohttp

from guestcomms.channels.base import Provider
from guestcomms.channels.fcm import FcmProvider
from guestcomms.channels.mailgun import MailgunProvider
from guestcomms.channels.postmark import PostmarkProvider
from guestcomms.channels.resend import ResendProvider
from guestcomms.channels.sendgrid import SendGridProvider
from guestcomms.channels.ses import SesProvider
from guestcomms.channels.smtp import SmtpProvider
from guestcomms.channels.twilio_sms import TwilioSmsProvider
from guestcomms.channels.twilio_voice import TwilioVoiceProvider
from guestcomms.channels.vonage_sms import VonageSmsProvider
from guestcomms.channels.webhook import WebhookProvider
from guestcomms.channels.webpush import WebPushProvider
from guestcomms.domain.enums import Channel
from guestcomms.errors import ValidationFailedError


class _Buildable(Protocol):
    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, session: aiohttp.ClientSession | None
    ) -> Provider[Any]: ...


@dataclass(frozen=True, slots=True)
class ProviderKind:
    """One configurable kind of provider."""

    name: str
    channel: Channel
    cls: Any  # a Provider subclass with from_config

    def build(
        self, config: Mapping[str, Any], *, session: aiohttp.ClientSession | None
    ) -> Provider[Any]:
        """A provider instance; ``ConfigError`` names a missing or invalid setting."""
        provider: Provider[Any] = self.cls.from_config(config, session=session)
        return provider


KINDS: Mapping[str, ProviderKind] = MappingProxyType(
    {
        kind.name: kind
        for kind in (
            ProviderKind("smtp", Channel.EMAIL, SmtpProvider),
            ProviderKind("ses", Channel.EMAIL, SesProvider),
            ProviderKind("sendgrid", Channel.EMAIL, SendGridProvider),
            ProviderKind("resend", Channel.EMAIL, ResendProvider),
            ProviderKind("mailgun", Channel.EMAIL, MailgunProvider),
            ProviderKind("postmark", Channel.EMAIL, PostmarkProvider),
            ProviderKind("webhook", Channel.WEBHOOK, WebhookProvider),
            ProviderKind("webpush", Channel.PUSH, WebPushProvider),
            ProviderKind("fcm", Channel.PUSH, FcmProvider),
            ProviderKind("twilio_sms", Channel.SMS, TwilioSmsProvider),
            ProviderKind("vonage_sms", Channel.SMS, VonageSmsProvider),
            ProviderKind("twilio_voice", Channel.VOICE, TwilioVoiceProvider),
        )
    }
)


def get_kind(name: str) -> ProviderKind:
    """The kind called ``name``; a 422 naming ``kind`` if there is none."""
    try:
        return KINDS[name]
    except KeyError:
        known = ", ".join(sorted(KINDS))
        raise ValidationFailedError(
            f"unknown provider kind {name!r}; known kinds: {known}", field="kind"
        ) from None
