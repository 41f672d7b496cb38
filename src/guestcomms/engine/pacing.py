"""Quiet hours and frequency caps for a claimed batch: which deliveries wait, and until when.

The composer calls :meth:`Pacer.deferrals` once per batch, after it has picked each delivery's
channel and loaded its contacts and events: one query for the batch's organizations (zone and
settings) and one grouped count of recent sends per (organization, capped channel). It answers
a :class:`Deferral` for each delivery that must wait; the worker records it as ``scheduled``
for that instant with a ``deferred`` event, and gives back the attempt the claim counted.

Rules (docs/architecture.md, "Quiet hours and frequency caps"):

- Emergencies (priority 0) are never deferred.
- Quiet hours hold SMS and calls outside the sending window (``settings.quiet_hours`` of the
  organization, else the server's ``GUESTCOMMS_QUIET_HOURS``, 08:00-21:00) in the recipient's
  zone: the contact's, else the message's event's, else the organization's.
- A frequency cap (``settings.frequency_caps``, none by default) holds a delivery once the
  contact has had ``count`` sends (``sent`` or ``delivered``) on that channel in the last
  ``hours``, this batch's earlier ones included, until the oldest leaves the window; then quiet
  hours apply to that instant too.
- An organization whose settings do not parse is paced by the defaults (and logged), so a bad
  setting never stops its sends.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.domain.clock import as_utc, utc_now
from guestcomms.domain.enums import Channel, DeliveryStatus, Priority
from guestcomms.domain.frequency import FrequencyCap, FrequencyCapError, parse_caps
from guestcomms.domain.quiet_hours import QuietHoursError, SendingWindow, window_text
from guestcomms.domain.schedule import resolve_zone
from guestcomms.messages.models import Delivery
from guestcomms.organizations.models import Organization

log = structlog.get_logger("guestcomms.pacing")

QUIET_CHANNELS = frozenset({Channel.SMS.value, Channel.VOICE.value})
_COUNTED = (DeliveryStatus.SENT.value, DeliveryStatus.DELIVERED.value)


@dataclass(frozen=True, slots=True)
class PaceItem:
    """One claimed delivery as pacing sees it: the channel it would go out on and the zones
    to try (the contact's, then its event's)."""

    delivery_id: uuid.UUID
    organization_id: uuid.UUID
    contact_id: uuid.UUID
    channel: str
    priority: int
    contact_zone: str | None = None
    event_zone: str | None = None


@dataclass(frozen=True, slots=True)
class Deferral:
    """Wait until ``until`` (UTC), because of ``reason``."""

    until: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class _OrgRules:
    zone: str | None
    window: SendingWindow | None
    caps: dict[str, FrequencyCap]


class Pacer:
    """Decides deferrals per batch. ``default_window`` applies to organizations without a
    ``quiet_hours`` setting (``None``: no quiet hours unless an organization sets them)."""

    def __init__(self, *, default_window: SendingWindow | None) -> None:
        self._default = default_window

    async def deferrals(
        self, session: AsyncSession, items: Sequence[PaceItem]
    ) -> dict[uuid.UUID, Deferral]:
        """The deliveries among ``items`` that must wait, with when and why."""
        paced = [i for i in items if i.priority > Priority.EMERGENCY]
        if not paced:
            return {}
        now = utc_now()
        rules = await self._rules(session, {i.organization_id for i in paced})
        recent = await _recent_sends(session, paced, rules, now=now)
        found: dict[uuid.UUID, Deferral] = {}
        for item in sorted(paced, key=lambda i: (i.priority, i.delivery_id)):
            org = rules[item.organization_id]
            at, reason = now, ""
            cap = org.caps.get(item.channel)
            if cap is not None:
                key = (item.organization_id, item.contact_id, item.channel)
                sent, oldest = recent.get(key, (0, None))
                free = cap.free_at(sent=sent, oldest=oldest, now=now)
                if free is None:
                    recent[key] = (sent + 1, oldest or now)  # this one goes out now
                else:
                    at = free
                    reason = f"frequency cap: {cap.count} {item.channel} in {cap.hours:g}h"
            if org.window is not None and item.channel in QUIET_CHANNELS:
                zone = resolve_zone(item.contact_zone, item.event_zone, org.zone)
                opens = org.window.next_allowed(at, zone)
                if opens is not None:
                    at = opens
                    quiet = f"quiet hours (sends {window_text(org.window)} in {zone.key})"
                    reason = f"{reason}; then {quiet}" if reason else quiet
            if reason:
                found[item.delivery_id] = Deferral(until=at, reason=reason)
        return found

    async def _rules(
        self, session: AsyncSession, organization_ids: set[uuid.UUID]
    ) -> dict[uuid.UUID, _OrgRules]:
        rows = await session.execute(
            select(Organization.id, Organization.timezone, Organization.settings).where(
                Organization.id.in_(organization_ids)
            )
        )
        return {row.id: self._org_rules(row.id, row.timezone, row.settings) for row in rows}

    def _org_rules(self, org: uuid.UUID, zone: str | None, settings: Any) -> _OrgRules:
        settings = settings if isinstance(settings, dict) else {}
        window = self._default
        caps: dict[str, FrequencyCap] = {}
        try:
            if "quiet_hours" in settings:
                window = SendingWindow.parse(settings["quiet_hours"])
            caps = parse_caps(settings.get("frequency_caps"))
        except (QuietHoursError, FrequencyCapError) as e:
            log.warning("pacing.bad_settings", organization_id=str(org), error=str(e))
        return _OrgRules(zone=zone, window=window, caps=caps)


async def _recent_sends(
    session: AsyncSession,
    items: Sequence[PaceItem],
    rules: dict[uuid.UUID, _OrgRules],
    *,
    now: datetime,
) -> dict[tuple[uuid.UUID, uuid.UUID, str], tuple[int, datetime | None]]:
    """Sends per (organization, contact, channel) inside each capped channel's window, and
    the oldest of them: one grouped query per (organization, capped channel) in the batch."""
    wanted: dict[tuple[uuid.UUID, str], set[uuid.UUID]] = {}
    for item in items:
        if item.channel in rules[item.organization_id].caps:
            wanted.setdefault((item.organization_id, item.channel), set()).add(item.contact_id)
    counts: dict[tuple[uuid.UUID, uuid.UUID, str], tuple[int, datetime | None]] = {}
    for (org, channel), contacts in wanted.items():
        since = now - rules[org].caps[channel].window
        rows = await session.execute(
            select(
                Delivery.contact_id,
                func.count().label("sent"),
                func.min(Delivery.updated_at).label("oldest"),
            )
            .where(
                Delivery.organization_id == org,
                Delivery.contact_id.in_(contacts),
                Delivery.channel == channel,
                Delivery.status.in_(_COUNTED),
                Delivery.updated_at > since,
            )
            .group_by(Delivery.contact_id)
        )
        for row in rows:
            oldest = as_utc(row.oldest) if row.oldest else None
            counts[(org, row.contact_id, channel)] = (int(row.sent), oldest)
    return counts
