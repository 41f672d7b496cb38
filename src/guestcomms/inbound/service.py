"""Applying provider events: idempotent, forward-only, and suppressing what must be.

Each event is recorded by ``(provider, event_id)`` first, so a replayed webhook changes nothing.
It then joins its delivery's history as an event, and moves the delivery's status only where
the state machine allows: a bounce that arrives before its delivery report ends ``bounced``,
and the late ``delivered`` cannot move it back. Hard bounces and complaints suppress the
address on its channel; an opt-out (Twilio 21610, an unsubscribe) suppresses it too.

A text a guest sends us is read for SMS keywords (:mod:`guestcomms.domain.sms_keywords`):
STOP suppresses the sender's number on SMS (reason ``stop``, source ``inbound-keyword``) in
the organization whose webhook URL it came to, START lifts that (and a provider's
``opt_out``), HELP answers with the organization's ``sms_help_text`` (the route returns it
as the reply: TwiML for Twilio). Other inbound texts are recorded and left unmatched.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from guestcomms.channels.events import ProviderEvent, ProviderEventType
from guestcomms.compliance.repository import SuppressionRepository
from guestcomms.contacts.validation import normalize_phone
from guestcomms.domain.clock import utc_now
from guestcomms.domain.enums import Channel, DeliveryStatus
from guestcomms.domain.ids import IdKind, InvalidIdError, from_public
from guestcomms.domain.sms_keywords import SmsKeyword, classify
from guestcomms.domain.states import can_transition
from guestcomms.inbound.repository import InboundRepository
from guestcomms.messages.models import Delivery

T = ProviderEventType

# The status an event moves a delivery to; events not listed only join its history.
_STATUS_OF: dict[ProviderEventType, DeliveryStatus] = {
    T.DELIVERED: DeliveryStatus.DELIVERED,
    T.BOUNCED: DeliveryStatus.BOUNCED,  # hard bounces only; soft ones may still deliver
    T.COMPLAINED: DeliveryStatus.COMPLAINED,
    T.FAILED: DeliveryStatus.FAILED,
    T.REJECTED: DeliveryStatus.FAILED,
}

# The suppressions an SMS START lifts: the guest's own opt-outs, never a bounce or manual one.
_SMS_OPT_OUTS = ("stop", "opt_out")

# Why an address stops receiving, by event.
_SUPPRESSION_REASON: dict[ProviderEventType, str] = {
    T.BOUNCED: "hard_bounce",
    T.COMPLAINED: "complaint",
    T.UNSUBSCRIBED: "unsubscribe",
}


@dataclass(slots=True)
class ApplyReport:
    """What a webhook did: events received, applied, seen before, or matching no delivery."""

    received: int = 0
    applied: int = 0
    duplicates: int = 0
    unmatched: int = 0
    suppressed: int = 0
    resubscribed: int = 0  # STOP suppressions lifted by START
    reply: str | None = None  # the text to answer the sender with (HELP)


class InboundService:
    """Applies one organization's provider events."""

    def __init__(self, *, repo: InboundRepository, suppressions: SuppressionRepository) -> None:
        self._repo = repo
        self._suppressions = suppressions

    async def apply(self, events: Sequence[ProviderEvent]) -> ApplyReport:
        """Apply ``events`` in order; the caller owns the transaction."""
        report = ApplyReport(received=len(events))
        for event in events:
            event_id = event.event_id or ""
            if not await self._repo.first_time(
                provider=event.provider, event_id=event_id, type_=event.type.value, raw=event.raw
            ):
                report.duplicates += 1
                continue
            if event.type is T.INBOUND_SMS and await self._keyword(event, report):
                report.applied += 1
                continue
            delivery = await self._repo.delivery(
                delivery_id=_our_id(event.delivery_ref), message_ids=event.message_ids
            )
            if delivery is None:
                report.unmatched += 1
                continue
            await self._apply_to(delivery, event)
            report.applied += 1
            report.suppressed += await self._suppress(delivery, event)
        return report

    async def _keyword(self, event: ProviderEvent, report: ApplyReport) -> bool:
        """Act on an SMS keyword from a guest; False when the text is none (or has no
        usable sender number)."""
        keyword = classify(event.text, opt_out_type=event.raw.get("OptOutType"))
        sender = _sender_number(event.from_number)
        if keyword is None or sender is None:
            return False
        if keyword is SmsKeyword.STOP:
            added = await self._suppressions.suppress(
                channel=Channel.SMS.value,
                address=sender,
                reason="stop",
                source="inbound-keyword",
                detail={"provider": event.provider, "event_id": event.event_id},
            )
            report.suppressed += int(added)
        elif keyword is SmsKeyword.START:
            report.resubscribed += await self._suppressions.lift(
                channel=Channel.SMS.value, address=sender, reasons=_SMS_OPT_OUTS
            )
        else:
            report.reply = await self._repo.sms_help_text()
        return True

    async def _apply_to(self, delivery: Delivery, event: ProviderEvent) -> None:
        now = utc_now()
        target = _STATUS_OF.get(event.type)
        moved = target is not None and can_transition(DeliveryStatus(delivery.status), target)
        if moved and target is not None:
            delivery.status = target.value
            delivery.updated_at = now
        detail = {
            "provider": event.provider,
            "event_id": event.event_id,
            "status_changed": moved,
            **{
                key: value
                for key, value in (
                    ("reason", event.reason),
                    ("bounce_code", event.bounce_code),
                    ("error_code", event.error_code),
                    ("url", event.url),
                    ("occurred_at", event.occurred_at.isoformat() if event.occurred_at else None),
                )
                if value
            },
        }
        await self._repo.add_event(delivery, event.type.value, detail, now=now)

    async def _suppress(self, delivery: Delivery, event: ProviderEvent) -> int:
        reason = "opt_out" if event.opted_out else _SUPPRESSION_REASON.get(event.type)
        if reason is None:
            return 0
        address = event.recipient or await self._repo.contact_address(
            delivery.contact_id, delivery.channel
        )
        if not address:
            return 0
        added = await self._suppressions.suppress(
            channel=delivery.channel,
            address=address,
            reason=reason,
            source=event.provider,
            detail={"delivery_id": delivery.id.hex, "event_id": event.event_id},
        )
        return int(added)


def _sender_number(number: str | None) -> str | None:
    """The sender as E.164 (Vonage sends it without the +), or None (a short code, an
    alphanumeric sender id)."""
    if not number:
        return None
    try:
        return normalize_phone(number if number.startswith("+") else f"+{number}")
    except ValueError:
        return None


def _our_id(ref: str | None) -> uuid.UUID | None:
    if not ref:
        return None
    try:
        return from_public(IdKind.DELIVERY, ref)
    except InvalidIdError:
        return None
