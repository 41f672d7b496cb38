"""A campaign's A/B experiment: each guest's arm, the test-fraction phases, and the results
with the sequential test's decision (the statistics are in ``domain.experiments``).

- **Assignment.** A guest's arm is ``assign_arm(campaign id, contact id, weights)``: a hash,
  so a re-run of a batch (after a crash) puts every guest in the same arm again. In
  ``thompson`` mode the weights of each batch are the arms' probabilities of being best so far
  (with a floor), so traffic shifts to the better arm during the send; a guest's arm then
  depends on the batch they fall in, which a re-run repeats from the same counts only if no
  result arrived in between (documented in docs/experiments.md).
- **Test fraction.** With ``test_fraction`` the fan-out first writes only the guests the hash
  puts in the fraction (phase ``test``), then the campaign waits in status ``testing``. The
  fan-out runner checks it: when the sequential test declares a winner, or ``wait_hours`` after
  the test phase ended, the campaign goes back to ``running`` in phase ``rollout``, and the
  rest of the guests get the winner (or, without one, the first variant: the control).
- **Successes** are unique human opens or clicks (``tracking_events`` not flagged as machine)
  of the arm's deliveries that reached the provider.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.audiences.selection import Recipient
from guestcomms.campaigns.models import Campaign, CampaignStatus
from guestcomms.campaigns.plan import Plan
from guestcomms.campaigns.schemas import (
    EXPERIMENT_STATE,
    ArmResult,
    ExperimentResult,
    ExperimentSpec,
    experiment_spec,
)
from guestcomms.domain.enums import DeliveryStatus
from guestcomms.domain.experiments import (
    ArmCounts,
    Decision,
    DecisionStatus,
    assign_arm,
    decide,
    in_test_fraction,
    thompson_weights,
)
from guestcomms.messages.models import Delivery, Message
from guestcomms.tracking.models import TrackingEvent

TEST = "test"
ROLLOUT = "rollout"
# deliveries that reached the provider: the denominator of an arm's rate
_REACHED = tuple(
    s.value
    for s in (
        DeliveryStatus.SENT,
        DeliveryStatus.DELIVERED,
        DeliveryStatus.BOUNCED,
        DeliveryStatus.COMPLAINED,
    )
)


def phase(campaign: Campaign) -> str:
    """``test`` until a test-fraction experiment rolls out; ``rollout`` after (and always
    ``test`` without a test fraction, where every guest is in the experiment)."""
    return str(_state(campaign).get("phase", TEST))


def _state(campaign: Campaign) -> dict[str, Any]:
    return dict((campaign.experiment or {}).get(EXPERIMENT_STATE) or {})


def spec_of(campaign: Campaign) -> ExperimentSpec:
    """The campaign's experiment as it was asked for (without the run's state)."""
    return experiment_spec(campaign.experiment or {})


def _save_state(campaign: Campaign, **changes: Any) -> None:
    state = {**_state(campaign), **changes}
    campaign.experiment = {**(campaign.experiment or {}), EXPERIMENT_STATE: state}


def split(
    campaign: Campaign,
    plan: Plan,
    guests: Sequence[Recipient],
    *,
    weights: Sequence[float],
) -> dict[int, list[Recipient]]:
    """The batch's guests by the arm index they get (guests left for the rollout are left
    out in the test phase; in the rollout, only they remain, all in the chosen arm)."""
    spec = plan.experiment
    if spec is None:
        raise ValueError("the campaign has no experiment")
    key = str(campaign.id)
    groups: dict[int, list[Recipient]] = {}
    if spec.test_fraction is not None:
        in_test = [in_test_fraction(key, str(g.contact_id), spec.test_fraction) for g in guests]
        if phase(campaign) == ROLLOUT:
            chosen = int(_state(campaign).get("rollout_arm", 0))
            rest = [g for g, tested in zip(guests, in_test, strict=True) if not tested]
            return {chosen: rest} if rest else {}
        guests = [g for g, tested in zip(guests, in_test, strict=True) if tested]
    for guest in guests:
        groups.setdefault(assign_arm(key, str(guest.contact_id), weights), []).append(guest)
    return groups


async def batch_weights(session: AsyncSession, campaign: Campaign, plan: Plan) -> list[float]:
    """The weights the next batch is assigned with: the variants' own, or in ``thompson``
    mode each arm's probability of being best from the results so far."""
    spec = plan.experiment
    if spec is None:
        raise ValueError("the campaign has no experiment")
    if spec.mode != "thompson":
        return [arm.weight for arm in plan.arms]
    counts = await arm_counts(session, campaign, spec)
    return thompson_weights(counts, seed=_seed(campaign))


async def arm_counts(
    session: AsyncSession, campaign: Campaign, spec: ExperimentSpec
) -> list[ArmCounts]:
    """Each arm's deliveries that reached the provider and how many of them had a unique
    human open (or click, by the experiment's metric)."""
    success = and_(
        TrackingEvent.delivery_id == Delivery.id,
        TrackingEvent.organization_id == campaign.organization_id,
        TrackingEvent.kind == spec.metric,
        TrackingEvent.machine.is_(False),
    )
    rows = await session.execute(
        select(
            Delivery.experiment_arm,
            func.count(distinct(Delivery.id)),
            func.count(distinct(TrackingEvent.delivery_id)),
        )
        .select_from(Delivery)
        .outerjoin(TrackingEvent, success)
        .where(
            Delivery.organization_id == campaign.organization_id,
            Delivery.message_id.in_(_campaign_messages(campaign.id)),
            Delivery.experiment_arm.is_not(None),
            Delivery.status.in_(_REACHED),
        )
        .group_by(Delivery.experiment_arm)
    )
    found = {int(row[0] or 0): (int(row[1]), int(row[2])) for row in rows}
    counts = [found.get(i, (0, 0)) for i in range(len(spec.variants))]
    return [
        ArmCounts(name=variant.name, sent=sent, successes=successes)
        for variant, (sent, successes) in zip(spec.variants, counts, strict=True)
    ]


def _campaign_messages(campaign_id: uuid.UUID) -> Any:
    return select(Message.id).where(Message.campaign_id == campaign_id).scalar_subquery()


def _seed(campaign: Campaign) -> int:
    return campaign.id.int % (2**31)


async def decision(session: AsyncSession, campaign: Campaign, spec: ExperimentSpec) -> Decision:
    """The sequential test's decision on the results so far (docs/experiments.md)."""
    return decide(
        await arm_counts(session, campaign, spec),
        confidence=spec.confidence,
        min_sample_per_arm=spec.min_sample_per_arm,
        seed=_seed(campaign),
    )


async def results(session: AsyncSession, campaign: Campaign) -> ExperimentResult:
    """The results page: each arm's rate, interval and probability of being best, and the
    decision with its reason."""
    spec = spec_of(campaign)
    verdict = await decision(session, campaign, spec)
    state = _state(campaign)
    winner = verdict.winner
    reason = verdict.reason
    if state.get("rollout_reason"):
        reason = f"{state['rollout_reason']} (now: {verdict.reason})"
    return ExperimentResult(
        status=verdict.status.value,
        phase=phase(campaign),
        winner=spec.variants[winner].name if winner is not None else None,
        reason=reason,
        metric=spec.metric,
        confidence=spec.confidence,
        arms=[
            ArmResult(
                name=arm.name,
                sent=arm.sent,
                successes=arm.successes,
                rate=arm.rate,
                interval=arm.interval,
                probability_best=arm.probability_best,
            )
            for arm in verdict.arms
        ],
    )


async def rollout_if_decided(session: AsyncSession, campaign: Campaign, *, now: datetime) -> bool:
    """For a campaign ``testing`` its fraction: start the rollout when the test declared a
    winner, or when ``wait_hours`` have passed since the test phase ended (with the first
    variant, the control). Returns whether it started; the caller commits."""
    spec = spec_of(campaign)
    verdict = await decision(session, campaign, spec)
    tested_at = datetime.fromisoformat(_state(campaign)["tested_at"])
    if verdict.status is DecisionStatus.WINNER and verdict.winner is not None:
        arm, why = verdict.winner, f"winner {spec.variants[verdict.winner].name}: {verdict.reason}"
    elif now >= tested_at + timedelta(hours=spec.wait_hours):
        arm, why = (
            0,
            (
                f"no winner after {spec.wait_hours:g} h ({verdict.reason}): the rest get the "
                f"first variant, {spec.variants[0].name}"
            ),
        )
    else:
        return False
    _save_state(campaign, phase=ROLLOUT, rollout_arm=arm, rollout_reason=why)
    return True


def mark_tested(campaign: Campaign, *, now: datetime) -> None:
    """The test phase's fan-out is done: remember when (the wait counts from here)."""
    _save_state(campaign, tested_at=now.isoformat())


async def start_rollouts(session: AsyncSession, *, now: datetime, limit: int = 10) -> int:
    """Roll out the ``testing`` campaigns (of any organization) whose test has decided or
    whose wait is over: back to ``running`` for the rest of their guests. Returns how many;
    the caller commits."""
    query = (
        select(Campaign)
        .where(Campaign.status == CampaignStatus.TESTING.value)
        .order_by(Campaign.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    started = 0
    for campaign in (await session.scalars(query)).all():
        if await rollout_if_decided(session, campaign, now=now):
            campaign.status = CampaignStatus.RUNNING.value
            campaign.cursor = None
            campaign.processed = 0  # the audience is read again, for the other guests
            campaign.lease_token = None
            campaign.lease_until = None
            started += 1
    return started
