"""Send-time optimisation: hours of the week per zone, shrinkage, the per-slot cap, acceptance.

Expected hours are written out by hand from the zones' offsets (EST -5 / EDT -4, GMT 0 /
BST +1, IST +05:30, NZDT +13). The acceptance test runs the simulation of
``bench/send_time_sim.py`` (``python -m bench.send_time_sim`` runs it larger) on 2,000 guests
with a fixed seed, so its figures are the same on every run.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from bench import send_time_sim as sim

from guestcomms.domain.send_time import (
    HOURS_PER_WEEK,
    KERNEL,
    EngagementProfile,
    GuestInput,
    HourCounts,
    SendChoice,
    SendTimeError,
    SlotCapacityError,
    count_hours,
    flat_profile,
    hour_of_week,
    learn,
    learn_pooled,
    plan_send_times,
    posterior,
    window_slots,
)

# The optimiser must beat the best fixed UTC hour by this many percentage points of expected
# open rate on the simulated population (it measures 12.2; docs/send-time.md).
MIN_MARGIN_POINTS = 8.0
# ... and the best fixed local hour (a local_time schedule) by this many (it measures 4.7).
MIN_MARGIN_OVER_LOCAL_POINTS = 2.0
SIM_GUESTS = 2_000

NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
KOLKATA = ZoneInfo("Asia/Kolkata")
AUCKLAND = ZoneInfo("Pacific/Auckland")
MONDAY = datetime(2026, 6, 1, tzinfo=UTC)
START, END = sim.WINDOW_START, sim.WINDOW_START + sim.WINDOW  # the simulated campaign's window


def utc(text: str) -> datetime:
    """An aware UTC instant from ``YYYY-MM-DDTHH:MM``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def peaked(*hours: int, weight: float = 0.9) -> EngagementProfile:
    """A profile with ``weight`` shared by ``hours`` and the rest spread over the others."""
    rest = (1 - weight) / (HOURS_PER_WEEK - len(hours))
    return EngagementProfile(
        tuple(weight / len(hours) if h in hours else rest for h in range(HOURS_PER_WEEK))
    )


def slot_load(plan: Mapping[Any, SendChoice]) -> Counter[datetime]:
    """How many guests each slot's start got."""
    return Counter(choice.send_at for choice in plan.values())


def guests_of(*profiles: EngagementProfile, zone: ZoneInfo = LONDON) -> list[GuestInput[int]]:
    return [GuestInput(key=i, zone=zone, profile=p) for i, p in enumerate(profiles)]


# hour_of_week


@pytest.mark.parametrize(
    ("instant", "zone", "expected"),
    [
        ("2026-06-01T00:00", ZoneInfo("UTC"), 0),  # Monday 00:00
        ("2026-06-07T23:59", ZoneInfo("UTC"), 167),  # Sunday 23:59
        ("2026-06-01T03:00", NEW_YORK, 167),  # Sunday 23:00 EDT: the week wraps
        ("2026-06-01T13:00", KOLKATA, 18),  # Monday 18:30 IST: the hour it is in
        ("2026-06-01T12:00", AUCKLAND, 24),  # Tuesday 00:00 NZST (+12 in June)
        ("2026-01-05T12:00", AUCKLAND, 25),  # Tuesday 01:00 NZDT (+13 in January)
    ],
)
def test_hour_of_week_is_the_local_wall_clock_hour(
    instant: str, zone: ZoneInfo, expected: int
) -> None:
    assert hour_of_week(utc(instant), zone) == expected


def test_hour_of_week_across_spring_forward_skips_the_missing_hour() -> None:
    """New York, Sunday 2026-03-08: 01:00 EST is followed by 03:00 EDT, no 02:00."""
    hours = [hour_of_week(utc("2026-03-08T05:00") + timedelta(hours=i), NEW_YORK) for i in range(3)]
    assert hours == [6 * 24 + 0, 6 * 24 + 1, 6 * 24 + 3]


def test_hour_of_week_across_fall_back_repeats_the_hour() -> None:
    """London, Sunday 2026-10-25: 01:00 happens in BST (00:00 UTC) and again in GMT (01:00)."""
    hours = [hour_of_week(utc("2026-10-25T00:00") + timedelta(hours=i), LONDON) for i in range(3)]
    assert hours == [6 * 24 + 1, 6 * 24 + 1, 6 * 24 + 2]


def test_hour_of_week_rejects_a_naive_instant() -> None:
    with pytest.raises(SendTimeError, match="aware"):
        hour_of_week(datetime(2026, 6, 1, 9), LONDON)


# Learning and shrinkage


def test_kernel_keeps_one_observation_and_favours_its_own_hour() -> None:
    assert math.isclose(sum(KERNEL), 1.0)
    assert max(range(HOURS_PER_WEEK), key=KERNEL.__getitem__) == 0
    assert KERNEL[1] == KERNEL[-1] > KERNEL[24] > KERNEL[2] == 0  # neighbours, same hour daily


def test_no_history_gives_exactly_the_prior() -> None:
    prior = peaked(10, 11)
    profile = learn([], LONDON, prior=prior, prior_strength=6)
    assert profile.weights == prior.weights
    assert profile.evidence == 0
    assert profile.own_share == 0


def test_lots_of_history_comes_close_to_the_guests_own_pattern() -> None:
    """400 opens, all Monday 19:xx London time, outweigh a prior peaked on Friday morning."""
    opens = [utc("2026-06-01T18:10") + timedelta(weeks=i % 8) for i in range(400)]
    prior = peaked(4 * 24 + 9)
    profile = learn(opens, LONDON, prior=prior, prior_strength=6)
    own = posterior(count_hours(opens, LONDON), prior=prior, prior_strength=0)
    assert profile.best_hour == 19
    assert profile.evidence == 400
    assert profile.own_share == pytest.approx(400 / 406)
    # |posterior - own| = k / (n + k) * |prior - own|, at most 6 / 406 (1.5%) anywhere.
    assert max(abs(a - b) for a, b in zip(profile.weights, own.weights, strict=True)) < 6 / 406


def test_thin_history_stays_near_the_prior() -> None:
    """One open moves a guest's profile towards it without overturning the prior's peak."""
    prior = peaked(4 * 24 + 9)
    profile = learn([utc("2026-06-01T18:10")], LONDON, prior=prior, prior_strength=6)
    assert profile.best_hour == prior.best_hour
    assert profile.weights[19] > prior.weights[19]
    assert profile.own_share == pytest.approx(1 / 7)


def test_an_open_counts_for_its_neighbouring_hours_and_the_same_hour_on_other_days() -> None:
    profile = learn(
        [utc("2026-06-01T19:00")], ZoneInfo("UTC"), prior=flat_profile(), prior_strength=0
    )
    weights = profile.weights
    assert weights[19] > weights[18] == weights[20] > weights[24 + 19] > weights[24 + 20] > 0
    assert weights[17] == weights[24 + 17] == 0


def test_pooled_patterns_count_each_contact_in_their_own_zone() -> None:
    """09:00 in London and 09:00 in New York are the same local hour, five hours apart."""
    histories = [([utc("2026-06-01T08:00")], LONDON), ([utc("2026-06-01T13:00")], NEW_YORK)]
    pooled = learn_pooled(histories, prior=flat_profile(), prior_strength=0)
    assert pooled.best_hour == 9
    assert pooled.evidence == 2
    assert count_hours([utc("2026-06-01T08:00")], LONDON) + HourCounts.empty() == count_hours(
        [utc("2026-06-01T08:00")], LONDON
    )


@pytest.mark.parametrize(
    "weights",
    [(1.0,) * 167, (0.5,) * 168, (-1.0,) + (2.0 / 167,) * 167, (math.nan,) + (1 / 167,) * 167],
)
def test_profile_rejects_weights_that_are_not_a_distribution(weights: tuple[float, ...]) -> None:
    with pytest.raises(SendTimeError, match="weights"):
        EngagementProfile(weights)


def test_negative_prior_strength_is_rejected() -> None:
    with pytest.raises(SendTimeError, match="prior_strength"):
        learn([], LONDON, prior=flat_profile(), prior_strength=-1)


# Planning


def test_each_guest_gets_their_best_local_hour_in_their_own_zone() -> None:
    """Both want Monday 09:00 local: 08:00 UTC in London, 13:00 UTC in New York."""
    guests = [
        GuestInput(
            key="ldn", zone=LONDON, profile=learn([], LONDON, prior=peaked(9), prior_strength=6)
        ),
        GuestInput(key="nyc", zone=NEW_YORK, profile=peaked(9)),
    ]
    plan = plan_send_times(
        guests, window_start=MONDAY, window_end=MONDAY + timedelta(days=1), max_share=1
    )
    assert plan["ldn"].send_at == utc("2026-06-01T08:00")
    assert plan["nyc"].send_at == utc("2026-06-01T13:00")
    assert plan["ldn"].hour_of_week == plan["nyc"].hour_of_week == 9
    assert plan["ldn"].fallback
    assert plan["ldn"].confidence == 0
    assert not plan["nyc"].displaced
    assert plan["nyc"].score == pytest.approx(0.9 * HOURS_PER_WEEK)


def test_no_slot_takes_more_than_its_share_and_the_keenest_keep_it() -> None:
    """Ten guests all want 09:00; with 30% per slot, three get it: those who'd lose most."""
    profiles = [peaked(9, weight=0.5 + 0.04 * i) for i in range(10)]
    plan = plan_send_times(
        guests_of(*profiles),
        window_start=MONDAY,
        window_end=MONDAY + timedelta(days=1),
        max_share=0.3,
    )
    load = slot_load(plan)
    assert max(load.values()) <= 3
    kept = {key for key, choice in plan.items() if choice.send_at == utc("2026-06-01T08:00")}
    assert kept == {7, 8, 9}
    assert all(plan[key].displaced for key in range(7))


def test_the_cap_holds_on_the_simulated_population() -> None:
    population = sim.learn_population(sim.simulate_guests(500, seed=7))
    plan = plan_send_times(
        population.inputs,
        window_start=START,
        window_end=END,
        max_share=0.1,
    )
    load = slot_load(plan)
    assert len(plan) == 500
    assert max(load.values()) <= math.ceil(0.1 * 500)
    assert any(choice.displaced for choice in plan.values())  # the cap did bind


def test_sends_stay_inside_the_window_even_when_the_best_hour_is_outside() -> None:
    """The guest wants 09:00; a 12:00-18:00 window gives them its slot closest in weight."""
    profile = learn([utc("2026-06-01T15:20")], LONDON, prior=peaked(9), prior_strength=1)
    start, end = utc("2026-06-01T11:00"), utc("2026-06-01T17:00")
    plan = plan_send_times(guests_of(profile), window_start=start, window_end=end, max_share=1)
    assert start <= plan[0].send_at < end
    assert plan[0].send_at == utc("2026-06-01T15:00")  # 16:00 BST, the hour of the open


def test_a_local_hour_lost_to_spring_forward_is_never_chosen() -> None:
    """New York's 02:00 on 2026-03-08 does not exist; a guest who loves it gets a real hour."""
    profile = EngagementProfile(
        tuple(
            0.5 if h == 6 * 24 + 2 else (0.3 if h == 6 * 24 + 3 else 0.2 / 166) for h in range(168)
        )
    )
    start = utc("2026-03-08T05:00")  # 00:00 EST
    plan = plan_send_times(
        guests_of(profile, zone=NEW_YORK),
        window_start=start,
        window_end=start + timedelta(hours=6),
        max_share=1,
    )
    assert plan[0].send_at == utc("2026-03-08T07:00")  # 03:00 EDT
    assert plan[0].hour_of_week == 6 * 24 + 3


def test_a_repeated_fall_back_hour_is_sent_at_its_first_instant() -> None:
    profile = peaked(6 * 24 + 1)
    plan = plan_send_times(
        guests_of(profile),
        window_start=utc("2026-10-24T22:00"),
        window_end=utc("2026-10-25T04:00"),
        max_share=1,
    )
    assert plan[0].send_at == utc("2026-10-25T00:00")  # 01:00 BST, not 01:00 GMT


def test_a_share_too_small_for_the_window_is_refused() -> None:
    with pytest.raises(SlotCapacityError, match="max_share"):
        plan_send_times(
            guests_of(flat_profile()),
            window_start=MONDAY,
            window_end=MONDAY + timedelta(hours=4),
            max_share=0.2,
        )


@pytest.mark.parametrize(
    ("start", "end", "slot", "max_share", "match"),
    [
        (MONDAY, MONDAY, timedelta(hours=1), 0.5, "window_end"),
        (MONDAY, MONDAY + timedelta(days=1), timedelta(0), 0.5, "slot"),
        (MONDAY, MONDAY + timedelta(days=1), timedelta(hours=1), 0.0, "max_share"),
        (MONDAY, MONDAY + timedelta(days=1), timedelta(hours=1), 1.5, "max_share"),
        (MONDAY, MONDAY + timedelta(weeks=5), timedelta(hours=1), 0.5, "window"),
        (datetime(2026, 6, 1), MONDAY, timedelta(hours=1), 0.5, "window_start"),
    ],
)
def test_bad_windows_and_options_are_refused(
    start: datetime, end: datetime, slot: timedelta, max_share: float, match: str
) -> None:
    with pytest.raises(SendTimeError, match=match):
        plan_send_times(
            guests_of(flat_profile()),
            window_start=start,
            window_end=end,
            slot=slot,
            max_share=max_share,
        )


def test_duplicate_keys_are_refused() -> None:
    guests = [GuestInput(key="a", zone=LONDON, profile=flat_profile())] * 2
    with pytest.raises(SendTimeError, match="unique"):
        plan_send_times(
            guests, window_start=MONDAY, window_end=MONDAY + timedelta(days=1), max_share=1
        )


def test_window_slots_cover_a_ragged_window() -> None:
    slots = window_slots(MONDAY, MONDAY + timedelta(minutes=150), slot=timedelta(hours=1))
    assert slots == [MONDAY, MONDAY + timedelta(hours=1), MONDAY + timedelta(hours=2)]


def test_the_plan_is_deterministic_and_only_ties_depend_on_input_order() -> None:
    """Reversed input may swap guests whose losses tie (same prior, one open), nothing more."""
    inputs = sim.learn_population(sim.simulate_guests(300, seed=3)).inputs
    first = plan_send_times(inputs, window_start=START, window_end=END, max_share=0.1)
    assert plan_send_times(inputs, window_start=START, window_end=END, max_share=0.1) == first
    assert list(first) == [guest.key for guest in inputs]
    reversed_plan = plan_send_times(inputs[::-1], window_start=START, window_end=END, max_share=0.1)
    assert slot_load(reversed_plan) == slot_load(first)
    assert sum(c.score for c in reversed_plan.values()) == pytest.approx(
        sum(c.score for c in first.values())
    )


def test_empty_audience_gets_an_empty_plan() -> None:
    assert (
        plan_send_times(
            [], window_start=MONDAY, window_end=MONDAY + timedelta(days=1), max_share=0.5
        )
        == {}
    )


# Acceptance


@pytest.fixture(scope="module")
def simulation() -> tuple[sim.Population, sim.SimResult]:
    population = sim.learn_population(sim.simulate_guests(SIM_GUESTS, seed=sim.SEED))
    return population, sim.evaluate(population, max_share=sim.MAX_SHARE)


def test_optimised_send_beats_the_best_fixed_time_by_the_stated_margin(
    simulation: tuple[sim.Population, sim.SimResult],
) -> None:
    _, result = simulation
    assert result.fixed_utc < result.fixed_local < result.optimised < result.oracle
    assert result.margin_points >= MIN_MARGIN_POINTS
    assert 100 * (result.optimised - result.fixed_local) >= MIN_MARGIN_OVER_LOCAL_POINTS
    load = slot_load(result.plan)
    assert max(load.values()) <= math.ceil(sim.MAX_SHARE * SIM_GUESTS)


def test_a_guest_with_no_history_falls_back_to_the_population_pattern(
    simulation: tuple[sim.Population, sim.SimResult],
) -> None:
    """A new guest of no event gets the organization's best slot, marked as a fallback."""
    population, _ = simulation
    zone = ZoneInfo("Europe/Berlin")
    newcomer = GuestInput(key=-1, zone=zone, profile=learn([], zone, prior=population.organization))
    plan = plan_send_times(
        [*population.inputs, newcomer], window_start=START, window_end=END, max_share=1
    )
    slots = window_slots(START, END)
    org = population.organization.weights
    best = max(slots, key=lambda s: org[hour_of_week(s, zone)])
    assert plan[-1].send_at == best
    assert plan[-1].fallback
    assert plan[-1].confidence == 0
    assert not any(plan[g.key].fallback for g in population.inputs if g.profile.evidence > 0)
