"""Routing strategies and the Router policy: order, fallbacks, breakers and exclusions."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from guestcomms.domain.breaker import BreakerConfig, CircuitBreaker
from guestcomms.domain.routing import (
    ProviderChoice,
    RoundRobin,
    Router,
    Strategy,
    least_outstanding,
    lowest_cost,
    priority_failover,
    weighted,
)

SES = ProviderChoice("ses", priority=2, weight=1.0, cost_per_message=0.0001, outstanding=7)
SENDGRID = ProviderChoice(
    "sendgrid", priority=1, weight=3.0, cost_per_message=0.0004, outstanding=2
)
MAILGUN = ProviderChoice("mailgun", priority=3, weight=6.0, cost_per_message=None, outstanding=2)
CANDIDATES = [SES, SENDGRID, MAILGUN]


def names(choices: list[ProviderChoice]) -> list[str]:
    """The names of ``choices`` in order."""
    return [c.name for c in choices]


def open_breaker(*, at: float = 0.0) -> CircuitBreaker:
    """A breaker that opened at ``at`` with a 30 s cool-down."""
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=1, cooldown_seconds=30.0))
    breaker.record_failure(at)
    return breaker


def test_priority_failover_orders_by_priority_then_name() -> None:
    """Lowest priority number first; ties broken by name."""
    tie = ProviderChoice("aws", priority=1)
    assert names(priority_failover([*CANDIDATES, tie])) == ["aws", "sendgrid", "ses", "mailgun"]


def test_least_outstanding_orders_by_in_flight_then_priority() -> None:
    """Fewest in flight first; equal counts fall back to priority."""
    assert names(least_outstanding(CANDIDATES)) == ["sendgrid", "mailgun", "ses"]


def test_lowest_cost_puts_unknown_cost_last() -> None:
    """Cheapest first, and a provider with no known cost after all priced ones."""
    assert names(lowest_cost(CANDIDATES)) == ["ses", "sendgrid", "mailgun"]


def test_round_robin_rotates_per_plan() -> None:
    """Each call starts one provider further along the name-sorted ring."""
    rr = RoundRobin()
    firsts = [rr.order(CANDIDATES)[0].name for _ in range(6)]
    assert firsts == ["mailgun", "sendgrid", "ses"] * 2
    assert names(rr.order(CANDIDATES)) == ["mailgun", "sendgrid", "ses"]


def test_round_robin_counts_each_candidate_set_apart() -> None:
    """Two channels with different providers keep separate rotations."""
    rr = RoundRobin()
    other = [ProviderChoice("twilio"), ProviderChoice("vonage")]
    assert rr.order(CANDIDATES)[0].name == "mailgun"
    assert rr.order(other)[0].name == "twilio"
    assert rr.order(CANDIDATES)[0].name == "sendgrid"


def test_weighted_is_deterministic_for_a_seed() -> None:
    """The same seed gives the same sequence of plans."""
    first = [names(weighted(CANDIDATES, rng=random.Random(7))) for _ in range(20)]
    second = [names(weighted(CANDIDATES, rng=random.Random(7))) for _ in range(20)]
    assert first == second


def test_weighted_first_choice_follows_the_weights() -> None:
    """Over 10,000 seeded picks each provider leads in proportion to its weight (+-2 points)."""
    rng = random.Random(20240601)
    leads = Counter(weighted(CANDIDATES, rng=rng)[0].name for _ in range(10_000))
    total_weight = sum(c.weight for c in CANDIDATES)
    for choice in CANDIDATES:
        share = leads[choice.name] / 10_000
        assert share == pytest.approx(choice.weight / total_weight, abs=0.02)


def test_weighted_returns_every_provider_once_with_zero_weight_last() -> None:
    """A plan lists each provider exactly once; weight 0 providers only as fallbacks."""
    spare = ProviderChoice("spare", priority=0, weight=0.0)
    rng = random.Random(1)
    for _ in range(200):
        plan = names(weighted([*CANDIDATES, spare], rng=rng))
        assert sorted(plan) == ["mailgun", "sendgrid", "ses", "spare"]
        assert plan[-1] == "spare"


@pytest.mark.parametrize("strategy", list(Strategy))
def test_every_strategy_lists_each_provider_once(strategy: Strategy) -> None:
    """Whatever the strategy, the plan is a permutation of the healthy candidates."""
    plan = Router(rng=random.Random(3)).plan(CANDIDATES, strategy=strategy, breakers={}, now=0.0)
    assert sorted(plan) == ["mailgun", "sendgrid", "ses"]


@pytest.mark.parametrize("strategy", list(Strategy))
def test_open_breakers_are_skipped(strategy: Strategy) -> None:
    """A provider whose breaker is open is left out of every strategy's plan."""
    router = Router(rng=random.Random(3))
    breakers = {"sendgrid": open_breaker(at=0.0), "ses": CircuitBreaker()}
    for _ in range(10):
        plan = router.plan(CANDIDATES, strategy=strategy, breakers=breakers, now=5.0)
        assert sorted(plan) == ["mailgun", "ses"]


def test_breaker_comes_back_after_cooldown() -> None:
    """Once the cool-down is over the provider is planned again (for its trial call)."""
    router = Router()
    breakers = {"sendgrid": open_breaker(at=0.0)}
    plan = router.plan(CANDIDATES, strategy=Strategy.PRIORITY_FAILOVER, breakers=breakers, now=30.0)
    assert plan == ["sendgrid", "ses", "mailgun"]


def test_planning_reserves_no_probe() -> None:
    """plan only peeks at breakers: the half-open trial slot is still free afterwards."""
    breaker = open_breaker(at=0.0)
    router = Router()
    for _ in range(5):
        router.plan(
            CANDIDATES,
            strategy=Strategy.PRIORITY_FAILOVER,
            breakers={"sendgrid": breaker},
            now=31.0,
        )
    assert breaker.allow(31.0)


def test_exclude_moves_to_the_next_provider() -> None:
    """After a failed attempt, excluding the provider yields the fallbacks in order."""
    router = Router()
    plan = router.plan(
        CANDIDATES, strategy=Strategy.PRIORITY_FAILOVER, breakers={}, now=0.0, exclude={"sendgrid"}
    )
    assert plan == ["ses", "mailgun"]


def test_plan_is_empty_when_nothing_may_be_tried() -> None:
    """All providers excluded or open gives an empty plan, for the worker to defer."""
    router = Router()
    plan = router.plan(
        CANDIDATES,
        strategy=Strategy.LOWEST_COST,
        breakers={"ses": open_breaker(), "mailgun": open_breaker()},
        now=1.0,
        exclude=("sendgrid",),
    )
    assert plan == []


def test_duplicate_names_are_refused() -> None:
    """Two candidates with the same name are a configuration error."""
    with pytest.raises(ValueError, match="duplicate"):
        Router().plan([SES, SES], strategy=Strategy.WEIGHTED, breakers={}, now=0.0)


def test_negative_weight_is_refused() -> None:
    """Weights below zero are refused when the choice is built."""
    with pytest.raises(ValueError, match="weight"):
        ProviderChoice("x", weight=-1.0)
