"""Twilio Programmable Voice: calls that read a text aloud, ``POST .../Calls.json``.

API reference: https://www.twilio.com/docs/voice/api/call-resource#create-a-call-resource and
TwiML ``<Say>``, https://www.twilio.com/docs/voice/twiml/say.

Settings (``from_config``): ``account_sid``, ``auth_token``, and optionally ``sender`` (a
voice-capable number of the account), ``voice`` (the default ``<Say>`` voice, e.g.
``Polly.Joanna``) and ``status_callback_url``, plus the shared ``base_url``,
``timeout_seconds``, ``max_concurrency``.

Request: HTTP Basic auth ``account_sid:auth_token``; form fields ``To`` (E.164, validated and
normalised here), ``From`` (the item's sender, else the configured one), ``Twiml``::

    <Response><Say language="en-US" voice="Polly.Joanna">the text, XML-escaped</Say></Response>

and ``StatusCallback`` carrying ``guestcomms_delivery_id`` in its query, as for SMS (see
:mod:`guestcomms.channels.twilio_sms`). Twilio calls it back when the call completes.

Answer: ``201`` with the call's ``sid`` (``CA...``), the provider id. Errors are classified
as for Twilio Messaging (:class:`~guestcomms.channels.twilio_sms.TwilioProvider`). No
idempotency key, no batch endpoint; Twilio's default is one new call per second.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self
from xml.sax.saxutils import escape, quoteattr

import aiohttp

from guestcomms.channels.base import Capabilities, OutgoingCall, PermanentProviderError
from guestcomms.channels.http import HttpRequest, require_setting
from guestcomms.channels.twilio_sms import TwilioProvider, checked_number, twilio_settings
from guestcomms.domain.enums import Channel

__all__ = ["MAX_TWIML_CHARS", "TwilioVoiceProvider", "say_twiml"]

MAX_TWIML_CHARS = 4000  # Twilio's limit on the Twiml parameter
DEFAULT_CALLS_PER_SECOND = 1.0  # Twilio's default CPS for an account


def say_twiml(text: str, *, language: str, voice: str | None = None) -> str:
    """TwiML that reads ``text`` aloud; the text and attributes are XML-escaped."""
    attributes = f" language={quoteattr(language)}"
    if voice:
        attributes += f" voice={quoteattr(voice)}"
    return f"<Response><Say{attributes}>{escape(text)}</Say></Response>"


class TwilioVoiceProvider(TwilioProvider[OutgoingCall]):
    """Place text-to-speech calls through Twilio's Calls API (see the module docstring)."""

    name = "twilio_voice"
    channel = Channel.VOICE
    capabilities = Capabilities(max_batch_size=1, max_per_second=DEFAULT_CALLS_PER_SECOND)
    resource = "Calls"

    def __init__(self, *, voice: str | None = None, **settings: Any) -> None:
        """``voice`` is the ``<Say>`` voice when the item names none; ``settings`` are
        :class:`TwilioProvider`'s."""
        super().__init__(**settings)
        self.voice = voice

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, session: aiohttp.ClientSession | None
    ) -> Self:
        """Build from ``{"account_sid", "auth_token", "sender"?, "voice"?,
        "status_callback_url"?, "base_url"?, ...}``."""
        voice = require_setting(config, "voice", provider=cls.name) if config.get("voice") else None
        return cls(voice=voice, session=session, **twilio_settings(config, provider=cls.name))

    def build_request(self, item: OutgoingCall) -> HttpRequest:
        """``To``, ``From``, ``Twiml`` and ``StatusCallback`` as form fields."""
        sender = item.sender or self.sender
        if not sender:
            raise PermanentProviderError(
                f"{self.name}: no sender: set 'sender' or give the call a sender",
                code="no_sender",
            )
        twiml = say_twiml(item.say, language=item.language, voice=item.voice or self.voice)
        if len(twiml) > MAX_TWIML_CHARS:
            raise PermanentProviderError(
                f"the call's TwiML is {len(twiml)} characters; Twilio takes {MAX_TWIML_CHARS}",
                code="too_long",
            )
        form = [("To", checked_number(item.to)), ("From", sender), ("Twiml", twiml)]
        callback = self.status_callback(item)
        if callback is not None:
            form.append(("StatusCallback", callback))
        return self.request(form)
