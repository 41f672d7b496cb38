"""Record an open or a click of a verified token, with the machine rules' verdict.

Called by the public tracking routes (``tracking/routes.py``) inside the request's
transaction; nothing here commits. The token was verified by the caller, so its organization
is trusted; the delivery must still exist in that organization, else ``NotFoundError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.errors import NotFoundError
from guestcomms.tracking.machine import (
    CLICK_BURST_WINDOW_SECONDS,
    MachineVerdict,
    classify_click,
    classify_open,
)
from guestcomms.tracking.models import TrackingEvent
from guestcomms.tracking.repository import CLICK, OPEN, TrackedDelivery, TrackingRepository
from guestcomms.tracking.tokens import ClickClaim, OpenClaim

MAX_USER_AGENT_CHARS = 300  # the column's length


@dataclass(frozen=True, slots=True)
class Visitor:
    """What a tracking request tells about who made it."""

    user_agent: str | None
    ip: str | None


async def _delivery(repo: TrackingRepository, claim: OpenClaim | ClickClaim) -> TrackedDelivery:
    delivery = await repo.delivery(claim.delivery_id)
    if delivery is None:
        raise NotFoundError("unknown tracking link")
    return delivery


def _seconds_since_send(delivery: TrackedDelivery, now: datetime) -> float:
    # Not sent yet (the worker records ``sent`` just after the provider accepts): taken as
    # "at once", which the rules treat as the least human.
    if delivery.sent_at is None:
        return 0.0
    return max((now - delivery.sent_at).total_seconds(), 0.0)


def _event(
    claim: OpenClaim | ClickClaim, kind: str, verdict: MachineVerdict, visitor: Visitor
) -> TrackingEvent:
    click = claim if isinstance(claim, ClickClaim) else None
    return TrackingEvent(
        delivery_id=claim.delivery_id,
        kind=kind,
        link_index=click.link_index if click else None,
        url=click.url if click else None,
        machine=verdict.machine,
        machine_reason=verdict.reason.value if verdict.reason else None,
        user_agent=(visitor.user_agent or None) and visitor.user_agent[:MAX_USER_AGENT_CHARS],
    )


async def record_open(
    session: AsyncSession, claim: OpenClaim, *, visitor: Visitor, now: datetime
) -> MachineVerdict:
    """Store one open-pixel fetch of ``claim``'s delivery; return the verdict stored."""
    repo = TrackingRepository(session, claim.organization_id)
    delivery = await _delivery(repo, claim)
    verdict = classify_open(
        user_agent=visitor.user_agent,
        ip=visitor.ip,
        seconds_since_send=_seconds_since_send(delivery, now),
    )
    event = _event(claim, OPEN, verdict, visitor)
    event.created_at = now
    await repo.add(event)
    return verdict


async def record_click(
    session: AsyncSession, claim: ClickClaim, *, visitor: Visitor, now: datetime
) -> MachineVerdict:
    """Store one click of ``claim``'s link; return the verdict stored. The burst rules count
    the distinct links of the delivery clicked in the window before, this one included; the
    number of links in the message is not known here, so ``all-links-clicked`` does not
    apply (``click-burst`` still does)."""
    repo = TrackingRepository(session, claim.organization_id)
    delivery = await _delivery(repo, claim)
    since = now - timedelta(seconds=CLICK_BURST_WINDOW_SECONDS)
    clicked = await repo.links_clicked_since(claim.delivery_id, since)
    verdict = classify_click(
        user_agent=visitor.user_agent,
        ip=visitor.ip,
        seconds_since_send=_seconds_since_send(delivery, now),
        clicks_in_window=len(clicked | {claim.link_index}),
    )
    event = _event(claim, CLICK, verdict, visitor)
    event.created_at = now
    await repo.add(event)
    return verdict
