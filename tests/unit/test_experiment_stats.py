"""A/B experiment statistics: assignment, intervals, probability of best, and the sequential test.

The simulation tests at the bottom are the acceptance tests of the experiments issue: 1,000
simulated campaigns each, with a fixed seed, looked at after every batch. Counts per batch are
drawn by an exact binomial sampler (inverse CDF, below), never a normal approximation.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import pytest

from guestcomms.domain.experiments import (
    DOCUMENTED_BATCH_PER_ARM,
    DOCUMENTED_MIN_SAMPLE_PER_ARM,
    DOCUMENTED_SAMPLE_PER_ARM,
    ArmCounts,
    DecisionStatus,
    ExperimentError,
    assign_arm,
    decide,
    in_test_fraction,
    msprt_p_value,
    probability_best,
    sequential_test,
    thompson_weights,
    wilson_interval,
)

RUNS = 1_000  # simulated campaigns per acceptance test


def binomial(rng: random.Random, trials: int, p: float) -> int:
    """An exact Binomial(trials, p) draw by inverse CDF: walk the pmf up from 0.

    Exact up to float rounding of the pmf recursion; fine for trials of a few hundred, where
    (1 - p) ** trials does not underflow.
    """
    if p <= 0:
        return 0
    if p >= 1:
        return trials
    pmf = (1 - p) ** trials
    cdf = pmf
    u = rng.random()
    k = 0
    odds = p / (1 - p)
    while u >= cdf and k < trials:
        pmf *= (trials - k) / (k + 1) * odds
        k += 1
        cdf += pmf
    return k


def arms_of(*counts: tuple[int, int]) -> list[ArmCounts]:
    """Arms named A, B, C... from (sent, successes) pairs."""
    return [ArmCounts("ABCDE"[i], sent, won) for i, (sent, won) in enumerate(counts)]


# --- assignment -----------------------------------------------------------------------------


def test_assignment_is_stable_across_runs_and_machines() -> None:
    """The arm comes from SHA-256 of fixed bytes: these values must never change."""
    two = [assign_arm("exp-1", f"contact-{i}", [1, 1]) for i in range(12)]
    three = [assign_arm("exp-1", f"contact-{i}", [1, 2, 3]) for i in range(12)]
    assert two == [1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1]
    assert three == [2, 2, 2, 2, 0, 1, 2, 1, 1, 1, 1, 2]
    assert [assign_arm("exp-1", f"contact-{i}", [1, 1]) for i in range(12)] == two


def test_assignment_is_proportional_to_weights() -> None:
    """Over 100,000 contacts each arm's share is within 0.6 points (4 sd) of its weight."""
    weights = [1.0, 2.0, 3.0, 4.0]
    counts = [0] * len(weights)
    for i in range(100_000):
        counts[assign_arm("welcome-subject", f"guest-{i}", weights)] += 1
    for count, weight in zip(counts, weights, strict=True):
        assert abs(count / 100_000 - weight / 10) < 0.006


def test_assignment_depends_on_the_experiment() -> None:
    """Another experiment shuffles the same contacts afresh (about half change arm)."""
    moved = sum(
        assign_arm("exp-a", f"c{i}", [1, 1]) != assign_arm("exp-b", f"c{i}", [1, 1])
        for i in range(10_000)
    )
    assert 4_700 < moved < 5_300


def test_keys_are_length_prefixed() -> None:
    """("ab", "c") and ("a", "bc") are different pairs, so they hash differently."""
    pairs = [(f"x{i}", f"y{i}z") for i in range(200)]
    glued = [(f"x{i}y", f"{i}z") for i in range(200)]
    left = [assign_arm(e, c, [1, 1]) for e, c in pairs]
    right = [assign_arm(e, c, [1, 1]) for e, c in glued]
    assert left != right


@pytest.mark.parametrize(
    "weights",
    [[1.0], [1.0] * 6, [1.0, 0.0], [1.0, -1.0], [1.0, math.nan], [1.0, math.inf], []],
)
def test_invalid_weights_are_refused(weights: list[float]) -> None:
    """2 to 5 arms, each weight positive and finite."""
    with pytest.raises(ExperimentError, match="weights"):
        assign_arm("exp", "contact", weights)


def test_test_fraction_is_independent_of_the_arm() -> None:
    """About 20% are in the test fraction, and within it the arms keep their 1:3 split."""
    inside = [i for i in range(50_000) if in_test_fraction("exp", f"g{i}", 0.2)]
    assert abs(len(inside) / 50_000 - 0.2) < 0.008
    second = sum(assign_arm("exp", f"g{i}", [1, 3]) for i in inside)
    assert abs(second / len(inside) - 0.75) < 0.02
    assert all(in_test_fraction("exp", f"g{i}", 1.0) for i in range(100))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.01, math.nan])
def test_invalid_fraction_is_refused(fraction: float) -> None:
    """The test fraction is in (0, 1]."""
    with pytest.raises(ExperimentError, match="fraction"):
        in_test_fraction("exp", "contact", fraction)


# --- Wilson interval, counts ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "trials", "confidence", "expected"),
    [
        # z = 1.959964: centre (0.8 + 0.192073) / 1.384146 = 0.716740,
        # half = 1.959964 / 1.384146 * sqrt(0.016 + 0.009604) = 0.226578
        (8, 10, 0.95, (0.490162, 0.943318)),
        # 0 successes: low is 0, high = (z^2/n) / (1 + z^2/n) = 0.384146 / 1.384146
        (0, 10, 0.95, (0.0, 0.277533)),
        # p = 0.5 is symmetric: 0.5 -+ 1.959964 / 1.038415 * sqrt(0.0025 + 0.0000960)
        (50, 100, 0.95, (0.403832, 0.596168)),
        # all successes at 99% (z = 2.575829): low = 1 / (1 + 6.634897 / 10)
        (10, 10, 0.99, (0.601146, 1.0)),
        (0, 0, 0.95, (0.0, 1.0)),
    ],
)
def test_wilson_matches_hand_computed_values(
    successes: int, trials: int, confidence: float, expected: tuple[float, float]
) -> None:
    """The Wilson score interval, against values worked out by hand from the formula."""
    low, high = wilson_interval(successes, trials, confidence)
    assert low == pytest.approx(expected[0], abs=1e-6)
    assert high == pytest.approx(expected[1], abs=1e-6)


def test_wilson_refuses_bad_input() -> None:
    """Inconsistent counts and a confidence outside (0, 1) are errors."""
    with pytest.raises(ExperimentError):
        wilson_interval(11, 10, 0.95)
    with pytest.raises(ExperimentError):
        wilson_interval(1, 10, 1.0)


@pytest.mark.parametrize(("sent", "successes"), [(-1, 0), (5, -1), (5, 6)])
def test_arm_counts_are_validated(sent: int, successes: int) -> None:
    """Counts are non-negative and successes never exceed sends."""
    with pytest.raises(ExperimentError):
        ArmCounts("A", sent, successes)


def test_arm_names_must_be_unique() -> None:
    """Two arms with one name would make the results page ambiguous."""
    with pytest.raises(ExperimentError, match="unique"):
        probability_best([ArmCounts("A", 10, 1), ArmCounts("A", 10, 2)])


# --- probability of being best, Thompson weights ---------------------------------------------


def exact_b_beats_a(a: ArmCounts, b: ArmCounts) -> float:
    """P(rate_B > rate_A) for Beta(1+s, 1+n-s) posteriors, in closed form (a finite sum)."""

    def log_beta(x: float, y: float) -> float:
        return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)

    alpha_a, beta_a = 1 + a.successes, 1 + a.sent - a.successes
    alpha_b, beta_b = 1 + b.successes, 1 + b.sent - b.successes
    return math.fsum(
        math.exp(
            log_beta(alpha_a + i, beta_a + beta_b)
            - math.log(beta_b + i)
            - log_beta(1 + i, beta_b)
            - log_beta(alpha_a, beta_a)
        )
        for i in range(alpha_b)
    )


@pytest.mark.parametrize("counts", [((40, 8), (40, 12)), ((200, 40), (180, 40)), ((5, 0), (5, 1))])
def test_probability_best_matches_the_exact_two_arm_value(
    counts: tuple[tuple[int, int], tuple[int, int]],
) -> None:
    """Monte Carlo with 20,000 draws is within 0.015 (4 sd) of the closed form."""
    arms = arms_of(*counts)
    best = probability_best(arms, draws=20_000, seed=7)
    assert sum(best) == pytest.approx(1.0)
    assert best[1] == pytest.approx(exact_b_beats_a(arms[0], arms[1]), abs=0.015)


def test_probability_best_is_deterministic() -> None:
    """Same inputs and seed, same answer; symmetric arms share the probability."""
    arms = arms_of((500, 100), (500, 100), (500, 100))
    first = probability_best(arms, draws=3_000, seed=3)
    assert first == probability_best(arms, draws=3_000, seed=3)
    assert all(abs(p - 1 / 3) < 0.04 for p in first)


def test_thompson_weights_favour_the_better_arm_but_keep_a_floor() -> None:
    """A clearly better arm gets most traffic; every arm keeps at least the floor."""
    arms = arms_of((1_000, 200), (1_000, 300), (1_000, 190))
    shares = thompson_weights(arms, draws=2_000, seed=1)
    assert sum(shares) == pytest.approx(1.0)
    assert shares[1] > 0.85
    assert min(shares) >= 0.05 - 1e-12
    with pytest.raises(ExperimentError, match="floor"):
        thompson_weights(arms, floor=0.34)


# --- the sequential test ----------------------------------------------------------------------


def test_msprt_p_value_matches_the_formula() -> None:
    """20% vs 25% of 1,000 each: pooled 0.225, V = 0.225 * 0.775 * 2/1000 = 0.00034875,
    tau^2 = 0.0025: log Lambda = 0.5 ln(V/(V+tau^2)) + d^2 tau^2/(2V(V+tau^2)) = 2.09526."""
    a, b = ArmCounts("A", 1_000, 200), ArmCounts("B", 1_000, 250)
    assert msprt_p_value(a, b) == pytest.approx(math.exp(-2.09526), rel=1e-4)
    assert msprt_p_value(b, a) == msprt_p_value(a, b)
    assert msprt_p_value(ArmCounts("A", 0, 0), b) == 1.0
    assert msprt_p_value(ArmCounts("A", 50, 0), ArmCounts("B", 50, 0)) == 1.0


def test_waiting_until_the_minimum_sample() -> None:
    """Below the minimum no winner is declared, however large the difference."""
    decision = decide(arms_of((340, 10), (400, 200)), min_sample_per_arm=1_000)
    assert decision.status is DecisionStatus.WAITING
    assert decision.winner is None
    assert decision.reason == "waiting: 340 of the 1,000 minimum per arm"


def test_a_clear_winner_and_its_reason() -> None:
    """A large difference past the minimum wins, and the reason says why in plain words."""
    decision = decide(arms_of((3_000, 600), (3_000, 750)), min_sample_per_arm=1_000, draws=2_000)
    assert decision.status is DecisionStatus.WINNER
    assert decision.winner == 1
    assert decision.reason.startswith("arm B leads with 25.0% vs 20.0% for arm A;")
    assert "is below 0.05" in decision.reason
    summary = decision.arms[1]
    assert (summary.name, summary.sent, summary.successes, summary.rate) == ("B", 3_000, 750, 0.25)
    assert summary.interval == wilson_interval(750, 3_000, 0.95)
    assert summary.probability_best > 0.99


def test_three_arms_split_alpha() -> None:
    """With 3 arms the leader must beat both others at alpha / 2 (Bonferroni)."""
    verdict = sequential_test(
        arms_of((3_000, 600), (3_000, 700), (3_000, 610)), min_sample_per_arm=1_000
    )
    assert verdict.threshold == pytest.approx(0.025)
    assert verdict.leader == 1
    assert "(0.05 split over 2 comparisons)" in verdict.reason


def test_inconclusive_at_the_maximum() -> None:
    """At the maximum sample without a winner the experiment stops, and says so."""
    verdict = sequential_test(
        arms_of((3_000, 600), (3_000, 620)), min_sample_per_arm=1_000, max_sample_per_arm=3_000
    )
    assert verdict.status is DecisionStatus.INCONCLUSIVE
    assert verdict.winner is None
    assert verdict.reason.startswith("no winner: every arm reached the 3,000 maximum")


@pytest.mark.parametrize("confidence", [0.89, 0.9995, 1.0, math.nan])
def test_confidence_outside_the_allowed_range_is_refused(confidence: float) -> None:
    """The configured confidence is between 90% and 99.9%."""
    with pytest.raises(ExperimentError, match="confidence"):
        decide(arms_of((100, 10), (100, 20)), confidence=confidence, min_sample_per_arm=10)


def test_decide_takes_the_sequential_tests_verdict() -> None:
    """decide's winner, status and reason are sequential_test's, whatever the counts."""
    rng = random.Random(5)
    for _ in range(50):
        arms = arms_of(*[(n, rng.randint(0, n)) for n in (rng.randint(0, 500) for _ in "abc")])
        verdict = sequential_test(arms, confidence=0.9, min_sample_per_arm=50)
        decision = decide(arms, confidence=0.9, min_sample_per_arm=50, draws=200)
        assert (decision.status, decision.winner, decision.reason) == (
            verdict.status,
            verdict.winner,
            verdict.reason,
        )


# --- simulations: the acceptance tests ---------------------------------------------------------


@dataclass
class Outcome:
    """What RUNS simulated campaigns ended with."""

    winners: list[int]  # campaigns won by each arm
    naive_false: int  # campaigns where a peeked fixed-horizon z-test ever rejected (2 arms)


def simulate(rates: Sequence[float], *, confidence: float, seed: int) -> Outcome:
    """Run RUNS campaigns, looking after every batch, up to the documented maximum per arm."""
    rng = random.Random(seed)
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    winners = [0] * len(rates)
    naive_false = 0
    for _ in range(RUNS):
        successes = [0] * len(rates)
        sent = 0
        naive_hit = finished = False
        naive_done = len(rates) != 2  # the naive comparison is only run for two arms
        while sent < DOCUMENTED_SAMPLE_PER_ARM and not (finished and naive_done):
            sent += DOCUMENTED_BATCH_PER_ARM
            successes = [
                s + binomial(rng, DOCUMENTED_BATCH_PER_ARM, p)
                for s, p in zip(successes, rates, strict=True)
            ]
            if not naive_done:
                naive_hit = naive_done = naive_z_rejects(successes, sent, z)
            if finished:
                continue
            verdict = sequential_test(
                [ArmCounts(str(i), sent, s) for i, s in enumerate(successes)],
                confidence=confidence,
                min_sample_per_arm=DOCUMENTED_MIN_SAMPLE_PER_ARM,
                max_sample_per_arm=DOCUMENTED_SAMPLE_PER_ARM,
            )
            if verdict.winner is not None:
                winners[verdict.winner] += 1
            finished = verdict.status in {DecisionStatus.WINNER, DecisionStatus.INCONCLUSIVE}
        naive_false += naive_hit
    return Outcome(winners=winners, naive_false=naive_false)


def naive_z_rejects(successes: Sequence[int], sent: int, z: float) -> bool:
    """The fixed-horizon pooled two-proportion z-test, wrongly applied at every look."""
    pooled = sum(successes) / (2 * sent)
    variance = pooled * (1 - pooled) * 2 / sent
    return variance > 0 and abs(successes[1] - successes[0]) / sent > z * math.sqrt(variance)


def tolerance(alpha: float) -> float:
    """Three standard errors of a rate alpha measured over RUNS campaigns."""
    return 3 * math.sqrt(alpha * (1 - alpha) / RUNS)


def test_exact_binomial_sampler() -> None:
    """The simulation's sampler reproduces the Binomial(100, 0.2) pmf (chi-square, 30k draws)."""
    rng = random.Random(2)
    draws = 30_000
    counts = [0] * 101
    for _ in range(draws):
        counts[binomial(rng, 100, 0.2)] += 1
    pmf = [math.comb(100, k) * 0.2**k * 0.8 ** (100 - k) for k in range(101)]
    # Cells 0-12 and 28-100 pooled so every expected count is large.
    cells = [(0, 12), *((k, k) for k in range(13, 28)), (28, 100)]
    chi2 = 0.0
    for low, high in cells:
        expected = draws * math.fsum(pmf[low : high + 1])
        chi2 += (sum(counts[low : high + 1]) - expected) ** 2 / expected
    assert chi2 < 39.25  # the 99.9% point of chi-square with 16 degrees of freedom


@pytest.mark.parametrize("confidence", [0.90, 0.95, 0.99])
def test_identical_arms_rarely_declare_a_winner(confidence: float) -> None:
    """Acceptance: two arms at 20%, looked at every 100 sends per arm up to the documented
    maximum, over 1,000 campaigns: a false winner in at most alpha (+ 3 standard errors) of
    them; the same paths tested by a peeked fixed-horizon z-test exceed alpha by far, which
    shows the simulation can tell a valid test from an invalid one."""
    alpha = 1 - confidence
    outcome = simulate([0.2, 0.2], confidence=confidence, seed=20_260_601)
    assert sum(outcome.winners) / RUNS <= alpha + tolerance(alpha)
    assert outcome.naive_false / RUNS > 2 * alpha


def test_three_identical_arms_rarely_declare_a_winner() -> None:
    """With three identical arms the Bonferroni split keeps false winners under alpha too."""
    outcome = simulate([0.2, 0.2, 0.2], confidence=0.95, seed=20_260_602)
    assert sum(outcome.winners) / RUNS <= 0.05 + tolerance(0.05)


def test_a_five_point_lift_wins_at_the_documented_sample_size() -> None:
    """Acceptance: 20% vs 25% at 95% confidence, up to DOCUMENTED_SAMPLE_PER_ARM per arm: the
    better arm wins in at least 90% of 1,000 campaigns and the worse one almost never."""
    outcome = simulate([0.20, 0.25], confidence=0.95, seed=20_260_603)
    assert outcome.winners[1] / RUNS >= 0.90
    assert outcome.winners[0] / RUNS <= 0.05
