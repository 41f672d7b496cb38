"""Record a batch of opens and clicks of verified tokens, each with the machine rules' verdict.

Called by the hit recorder (``tracking/recorder.py``) inside the transaction it owns for the
batch; nothing here commits. The tokens were verified by the caller, so their organizations
are trusted; each delivery must still exist in its token's organization, else that hit is
not stored and its verdict is ``None`` (the route answers 404).

A batch is decided as if its hits had come one after the other in the order given: a click's
burst count sees the clicks stored before the batch and the batch's earlier clicks of the
same delivery. Queries per batch: one for the deliveries and their send times, one for the
clicks of the burst window (only when the batch has clicks), one insert.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.domain.ids import new_id
from guestcomms.tracking.machine import (
    CLICK_BURST_WINDOW_SECONDS,
    MachineVerdict,
    Network,
    classify_click,
    classify_open,
)
from guestcomms.tracking.repository import (
    CLICK,
    OPEN,
    DeliveryKey,
    HitRepository,
    TrackedDelivery,
)
from guestcomms.tracking.tokens import ClickClaim, OpenClaim

MAX_USER_AGENT_CHARS = 300  # the column's length
_BURST_WINDOW = timedelta(seconds=CLICK_BURST_WINDOW_SECONDS)


@dataclass(frozen=True, slots=True)
class Visitor:
    """What a tracking request tells about who made it."""

    user_agent: str | None
    ip: str | None


@dataclass(frozen=True, slots=True)
class Hit:
    """One fetch of a verified open or click token, at ``at`` (when the request came)."""

    claim: OpenClaim | ClickClaim
    visitor: Visitor
    at: datetime

    @property
    def key(self) -> DeliveryKey:
        """The (organization, delivery) the token names."""
        return (self.claim.organization_id, self.claim.delivery_id)


def _seconds_since_send(delivery: TrackedDelivery, now: datetime) -> float:
    # Not sent yet (the worker records ``sent`` just after the provider accepts): taken as
    # "at once", which the rules treat as the least human.
    if delivery.sent_at is None:
        return 0.0
    return max((now - delivery.sent_at).total_seconds(), 0.0)


def _row(hit: Hit, verdict: MachineVerdict) -> dict[str, Any]:
    click = hit.claim if isinstance(hit.claim, ClickClaim) else None
    agent = hit.visitor.user_agent
    return {
        # ids in the batch's order, so reading by id replays the hits as they came
        "id": new_id(),
        "created_at": hit.at,
        "organization_id": hit.claim.organization_id,
        "delivery_id": hit.claim.delivery_id,
        "kind": CLICK if click else OPEN,
        "link_index": click.link_index if click else None,
        "url": click.url if click else None,
        "machine": verdict.machine,
        "machine_reason": verdict.reason.value if verdict.reason else None,
        "user_agent": agent[:MAX_USER_AGENT_CHARS] if agent else None,
    }


async def record_hits(
    session: AsyncSession, hits: Sequence[Hit], *, networks: Sequence[Network] = ()
) -> list[MachineVerdict | None]:
    """Store every hit of ``hits`` whose delivery exists in its organization; return, in the
    same order, the verdict stored for each, or ``None`` for a hit not stored.

    A click's burst count is the distinct links of its delivery clicked within
    ``CLICK_BURST_WINDOW_SECONDS`` before it, itself included; the number of links in the
    message comes with the click's token (``all-links-clicked``). A hit from one of
    ``networks`` (the operator's ``tracking_machine_networks``) is a machine's.
    """
    repo = HitRepository(session)
    deliveries = await repo.deliveries({hit.key for hit in hits})
    clicks = [hit for hit in hits if isinstance(hit.claim, ClickClaim) and hit.key in deliveries]
    # earlier clicks of each delivery: the stored ones, then the batch's own as it is decided
    clicked = (
        await repo.clicks_since({h.key for h in clicks}, min(h.at for h in clicks) - _BURST_WINDOW)
        if clicks
        else {}
    )
    seen: dict[DeliveryKey, list[tuple[int, datetime]]] = defaultdict(list)
    for key, earlier in clicked.items():
        seen[key].extend(earlier)
    verdicts: list[MachineVerdict | None] = []
    rows: list[dict[str, Any]] = []
    for hit in hits:
        delivery = deliveries.get(hit.key)
        if delivery is None:
            verdicts.append(None)
            continue
        since_send = _seconds_since_send(delivery, hit.at)
        claim = hit.claim
        if isinstance(claim, ClickClaim):
            window_start = hit.at - _BURST_WINDOW
            links = {index for index, at in seen[hit.key] if at >= window_start}
            verdict = classify_click(
                user_agent=hit.visitor.user_agent,
                ip=hit.visitor.ip,
                seconds_since_send=since_send,
                clicks_in_window=len(links | {claim.link_index}),
                links_in_message=claim.links_in_message,
                networks=networks,
            )
            seen[hit.key].append((claim.link_index, hit.at))
        else:
            verdict = classify_open(
                user_agent=hit.visitor.user_agent,
                ip=hit.visitor.ip,
                seconds_since_send=since_send,
                networks=networks,
            )
        verdicts.append(verdict)
        rows.append(_row(hit, verdict))
    await repo.add_all(rows)
    return verdicts
