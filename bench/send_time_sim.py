"""Send-time optimisation on a simulated population whose true best hours are known.

``python -m bench.send_time_sim [--guests N] [--seed S] [--max-share F]`` prints the expected
open rate of four sends of one campaign, each guest's open probability at their send time
averaged over the population (an expectation, so no sampling noise):

- **fixed UTC hour**: everyone at the single UTC hour of the window that is best for the
  population, chosen with the true probabilities (the fairest fixed-time send there is);
- **fixed local hour**: everyone at the best single wall-clock hour in their own zone, also
  chosen with the true probabilities (what a ``local_time`` schedule can do today);
- **optimised**: :func:`~guestcomms.domain.send_time.plan_send_times` on profiles learned from
  the simulated history, with at most ``--max-share`` of the campaign per slot;
- **oracle**: every guest at their true best slot, uncapped (the ceiling).

Then the margin of the optimised send over the fixed UTC hour, in points and relative, and the
time ``plan_send_times`` takes for 10,000 guests. ``tests/unit/test_send_time.py`` runs the
same simulation at 2,000 guests and asserts the margin.

**The population.** Guests live in seven zones (Europe, the Americas, India, Australasia) and
belong to one of three events whose zone and habit mixes differ. Each guest has a habit
(:data:`HABITS`: morning commuter, lunch-break reader, evening reader, night owl) with a
weekday peak hour, jittered by up to an hour either way and two hours later at weekends, and an
activity level. Their open probability at a local hour is ``activity * (BASE + PEAK *
exp(-d^2 / 2 sigma^2))``, ``d`` the hours from their peak. Their history: 0 to 20 earlier
messages at uniformly random instants over the 8 weeks before the campaign (one guest in ten
has none), each opened with the probability at its send time, 0 to 20 minutes later.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from guestcomms.domain.send_time import (
    CONTACT_PRIOR_STRENGTH,
    EVENT_PRIOR_STRENGTH,
    HOURS_PER_DAY,
    ORGANIZATION_PRIOR_STRENGTH,
    EngagementProfile,
    GuestInput,
    SendChoice,
    flat_profile,
    hour_of_week,
    learn,
    learn_pooled,
    plan_send_times,
    window_slots,
)

SEED = 20_260_602
WINDOW_START = datetime(2026, 6, 2, tzinfo=UTC)  # a Tuesday
WINDOW = timedelta(hours=24)  # every local hour of the day, in every zone
HISTORY = timedelta(weeks=8)  # before WINDOW_START
MAX_SENDS = 24  # earlier messages per guest, uniform 0..MAX_SENDS (at most 3 a week)
NEW_GUEST_SHARE = 0.1  # guests with no history at all
OPEN_DELAY_MINUTES = 20  # an open lands 0..20 minutes after its send
MAX_SHARE = 0.2  # of the campaign in one slot
BASE = 0.08  # open probability far from the peak, before activity
PEAK = 0.6  # added at the peak, before activity
SIGMA_HOURS = 1.5
WEEKEND_SHIFT_HOURS = 2
TIMED_GUESTS = 10_000
SPREAD_SHARES = (0.1, 0.06)  # tighter caps, to show what spreading costs (1/24 is the floor)

# (name, weekday peak hour) of each habit, in local time.
HABITS = (("commuter", 7), ("lunch", 12), ("evening", 20), ("night", 23))
# Per event: zone weights and habit weights (in HABITS order). A wedding in London with
# European guests, a New York gala, an event in Sydney with guests from India and Auckland.
EVENTS = (
    ({"Europe/London": 5, "Europe/Berlin": 3, "America/New_York": 1}, (3, 1, 4, 1)),
    ({"America/New_York": 4, "America/Los_Angeles": 3, "Europe/London": 1}, (4, 2, 2, 1)),
    ({"Australia/Sydney": 4, "Asia/Kolkata": 2, "Pacific/Auckland": 2}, (1, 1, 4, 3)),
)


@dataclass(frozen=True, slots=True)
class SimGuest:
    """One simulated guest: who they are, their true habit and what history they left."""

    key: int
    zone: ZoneInfo
    event: int
    peak_hour: int  # weekday peak, local
    activity: float
    history: tuple[datetime, ...]  # instants of their opens

    def open_probability(self, local_hour_of_week: int) -> float:
        """The true probability that this guest opens a message sent at that local hour."""
        day, hour = divmod(local_hour_of_week, HOURS_PER_DAY)
        peak = self.peak_hour + (WEEKEND_SHIFT_HOURS if day >= 5 else 0)
        distance = min((hour - peak) % HOURS_PER_DAY, (peak - hour) % HOURS_PER_DAY)
        bump = math.exp(-(distance**2) / (2 * SIGMA_HOURS**2))
        return min(1.0, self.activity * (BASE + PEAK * bump))

    def open_probability_at(self, instant: datetime) -> float:
        """The true open probability of a message sent at that UTC instant."""
        return self.open_probability(hour_of_week(instant, self.zone))


@dataclass(frozen=True, slots=True)
class Population:
    """The guests and the patterns learned from their history."""

    guests: list[SimGuest]
    organization: EngagementProfile
    events: list[EngagementProfile]
    inputs: list[GuestInput[int]]


@dataclass(frozen=True, slots=True)
class SimResult:
    """Expected open rates (0-1) of the four sends, and the optimised plan."""

    fixed_utc: float
    fixed_utc_at: datetime
    fixed_local: float
    fixed_local_hour: int
    optimised: float
    oracle: float
    plan: dict[int, SendChoice]

    @property
    def margin_points(self) -> float:
        """Optimised minus fixed UTC hour, in percentage points."""
        return 100 * (self.optimised - self.fixed_utc)

    @property
    def margin_relative(self) -> float:
        """Optimised over fixed UTC hour, minus 1."""
        return self.optimised / self.fixed_utc - 1


def simulate_guests(count: int, *, seed: int = SEED) -> list[SimGuest]:
    """Draw ``count`` guests and their history, deterministically for a seed."""
    rng = random.Random(seed)
    guests = []
    for key in range(count):
        event = rng.randrange(len(EVENTS))
        zone_weights, habit_weights = EVENTS[event]
        zone = ZoneInfo(rng.choices(list(zone_weights), weights=list(zone_weights.values()))[0])
        habit = rng.choices(HABITS, weights=habit_weights)[0]
        guest = SimGuest(
            key=key,
            zone=zone,
            event=event,
            peak_hour=(habit[1] + rng.randint(-1, 1)) % HOURS_PER_DAY,
            activity=rng.uniform(0.6, 1.2),
            history=(),
        )
        sends = 0 if rng.random() < NEW_GUEST_SHARE else rng.randint(0, MAX_SENDS)
        opens = []
        for _ in range(sends):
            sent = (
                WINDOW_START
                - HISTORY
                + timedelta(minutes=rng.randrange(HISTORY // timedelta(minutes=1)))
            )
            if rng.random() < guest.open_probability_at(sent):
                opens.append(sent + timedelta(minutes=rng.randint(0, OPEN_DELAY_MINUTES)))
        guests.append(dataclasses.replace(guest, history=tuple(opens)))
    return guests


def learn_population(guests: Sequence[SimGuest]) -> Population:
    """Learn the organization's, each event's and each guest's profile (the hierarchy)."""
    organization = learn_pooled(
        ((guest.history, guest.zone) for guest in guests),
        prior=flat_profile(),
        prior_strength=ORGANIZATION_PRIOR_STRENGTH,
    )
    events = [
        learn_pooled(
            ((guest.history, guest.zone) for guest in guests if guest.event == event),
            prior=organization,
            prior_strength=EVENT_PRIOR_STRENGTH,
        )
        for event in range(len(EVENTS))
    ]
    inputs = [
        GuestInput(
            key=guest.key,
            zone=guest.zone,
            profile=learn(
                guest.history,
                guest.zone,
                prior=events[guest.event],
                prior_strength=CONTACT_PRIOR_STRENGTH,
            ),
        )
        for guest in guests
    ]
    return Population(list(guests), organization, events, inputs)


def expected_rate(guests: Sequence[SimGuest], send_at: dict[int, datetime]) -> float:
    """The population's expected open rate when each guest's message goes at ``send_at``."""
    return math.fsum(guest.open_probability_at(send_at[guest.key]) for guest in guests) / len(
        guests
    )


def evaluate(population: Population, *, max_share: float = MAX_SHARE) -> SimResult:
    """Plan the campaign and compare it with the fixed-time sends and the oracle."""
    guests = population.guests
    slots = window_slots(WINDOW_START, WINDOW_START + WINDOW)
    # Per zone, each slot's local hour of the week and the first slot at each local hour.
    hours = {g.zone: [hour_of_week(s, g.zone) for s in slots] for g in guests}
    first_at = {
        zone: {h % HOURS_PER_DAY: slots[i] for i, h in reversed(list(enumerate(zone_hours)))}
        for zone, zone_hours in hours.items()
    }
    fixed_utc, fixed_utc_at = max(
        (expected_rate(guests, dict.fromkeys(range(len(guests)), at)), at) for at in slots
    )
    fixed_local, fixed_local_hour = max(
        (expected_rate(guests, {g.key: first_at[g.zone][hour] for g in guests}), hour)
        for hour in range(HOURS_PER_DAY)
    )
    plan = plan_send_times(
        population.inputs,
        window_start=WINDOW_START,
        window_end=WINDOW_START + WINDOW,
        max_share=max_share,
    )
    optimised = expected_rate(guests, {key: choice.send_at for key, choice in plan.items()})
    oracle = math.fsum(max(map(g.open_probability, hours[g.zone])) for g in guests) / len(guests)
    return SimResult(
        fixed_utc=fixed_utc,
        fixed_utc_at=fixed_utc_at,
        fixed_local=fixed_local,
        fixed_local_hour=fixed_local_hour,
        optimised=optimised,
        oracle=oracle,
        plan=plan,
    )


def evaluate_plan(population: Population, *, max_share: float) -> float:
    """The expected open rate of the optimised plan alone, at another ``max_share``."""
    plan = plan_send_times(
        population.inputs,
        window_start=WINDOW_START,
        window_end=WINDOW_START + WINDOW,
        max_share=max_share,
    )
    return expected_rate(population.guests, {key: c.send_at for key, c in plan.items()})


def time_plan(inputs: Sequence[GuestInput[int]], *, max_share: float = MAX_SHARE) -> float:
    """Seconds that one ``plan_send_times`` call takes for ``inputs`` (best of three)."""
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        plan_send_times(
            inputs,
            window_start=WINDOW_START,
            window_end=WINDOW_START + WINDOW,
            max_share=max_share,
        )
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: Sequence[str] | None = None) -> None:
    """Run the simulation and print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.send_time_sim")
    parser.add_argument("--guests", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--max-share", type=float, default=MAX_SHARE)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    population = learn_population(simulate_guests(args.guests, seed=args.seed))
    learned = time.perf_counter() - started
    result = evaluate(population, max_share=args.max_share)
    plan = result.plan.values()
    fallback = sum(choice.fallback for choice in plan)
    displaced = sum(choice.displaced for choice in plan)
    load: dict[datetime, int] = {}
    for choice in plan:
        load[choice.send_at] = load.get(choice.send_at, 0) + 1
    print(f"guests {args.guests:,}, seed {args.seed}, max share per slot {args.max_share:.0%}")
    print(f"simulated and learned in {learned:.2f} s")
    print(f"fixed UTC hour ({result.fixed_utc_at:%H:%M} UTC):   {result.fixed_utc:.2%}")
    print(f"fixed local hour ({result.fixed_local_hour:02d}:00 local): {result.fixed_local:.2%}")
    print(f"optimised:                   {result.optimised:.2%}")
    print(f"oracle (true best, uncapped): {result.oracle:.2%}")
    print(
        f"margin over fixed UTC hour: {result.margin_points:+.2f} points "
        f"({result.margin_relative:+.1%}); over fixed local hour: "
        f"{100 * (result.optimised - result.fixed_local):+.2f} points "
        f"({result.optimised / result.fixed_local - 1:+.1%})"
    )
    print(
        f"fallback (no history): {fallback:,}; displaced by the cap: {displaced:,}; "
        f"fullest slot: {max(load.values()):,} of {len(result.plan):,}"
    )
    for share in SPREAD_SHARES:
        tighter = evaluate_plan(population, max_share=share)
        print(f"optimised with at most {share:.0%} per slot: {tighter:.2%}")
    timed = population.inputs[:TIMED_GUESTS]
    print(f"plan_send_times for {len(timed):,} guests: {time_plan(timed):.3f} s (best of 3)")


if __name__ == "__main__":
    main()
