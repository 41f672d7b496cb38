"""A/B experiments: assigning guests to arms, and deciding when one arm has won.

An experiment has 2 to 5 arms (variants of a subject, a content or a channel), each with a
positive weight. The pieces, all pure and deterministic:

* :func:`assign_arm` puts a contact in an arm from a SHA-256 hash of the experiment's key and
  the contact's key, so a re-run with the same weights never moves a guest to another arm.
  :func:`in_test_fraction` picks the guests of the test fraction (send to N%, wait, send the
  winner to the rest) from a second, independent hash.
* :func:`decide` summarises each arm (rate, Wilson interval, probability of being best) and runs
  :func:`sequential_test`, the rule that declares a winner: a mixture sequential probability
  ratio test (mSPRT; Johari, Pekelis and Walsh, "Always valid inference", 2017) on the
  difference of two rates. Its p-value is *always valid*: the chance that it ever drops below
  alpha under the null is at most alpha however often the results are looked at, so the
  campaign may check after every batch and stop at the first winner.
* :func:`thompson_weights` turns the posteriors into the traffic share each arm gets next
  (Thompson sampling with a floor, so no arm starves).

docs/experiments.md explains the method, the mixing variance, the sample size we document
(:data:`DOCUMENTED_SAMPLE_PER_ARM`) and the simulated error rate and power that back it.

Pure: the standard library only (``hashlib``, ``math``, ``random``, ``statistics.NormalDist``).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from statistics import NormalDist

MIN_ARMS = 2
MAX_ARMS = 5
MIN_CONFIDENCE = 0.90
MAX_CONFIDENCE = 0.999
DEFAULT_CONFIDENCE = 0.95

# The variance tau^2 of the normal mixture N(0, tau^2) over the true difference of two rates
# (in rate units squared: 0.0025 is a standard deviation of 5 percentage points). The mSPRT is
# most powerful for differences near tau; 5 points is the size of effect a subject line or a
# channel change plausibly has on a 10-40% open or reply rate. Valid for any tau: tau only
# trades power between small and large effects. See docs/experiments.md.
DEFAULT_MIXING_VARIANCE = 0.05**2

# The maximum sends per arm at which a 5-point difference on a 20% base (20% vs 25%) is found
# by the sequential test at 95% confidence in at least 90% of campaigns, looking after every
# DOCUMENTED_BATCH_PER_ARM sends per arm from DOCUMENTED_MIN_SAMPLE_PER_ARM on. Measured by
# tests/unit/test_experiment_stats.py (1,000 simulated campaigns, fixed seed; about 96% at 3,000,
# 92% at 2,500, so 3,000 keeps a margin); docs/experiments.md gives the numbers. A fixed-horizon
# z-test looked at only once would need about 1,460 per arm for 90% power: the larger maximum is
# the price of being allowed to look after every batch (most campaigns stop far earlier).
DOCUMENTED_SAMPLE_PER_ARM = 3_000
DOCUMENTED_MIN_SAMPLE_PER_ARM = 200
DOCUMENTED_BATCH_PER_ARM = 100

DEFAULT_DRAWS = 10_000  # Monte Carlo draws for the probability of being best
THOMPSON_FLOOR = 0.05  # the smallest traffic share Thompson sampling gives any arm

# Hash domains: the arm and the test-fraction draws come from different digests, so whether a
# guest is in the test fraction tells nothing about their arm.
_ARM_DOMAIN = b"guestcomms.experiment.arm.v1"
_FRACTION_DOMAIN = b"guestcomms.experiment.test-fraction.v1"
_UNIT_BITS = 53
_UNIT_SCALE = 1 << _UNIT_BITS


class ExperimentError(ValueError):
    """An experiment's configuration or counts are invalid; the message names the field."""


class DecisionStatus(StrEnum):
    """Where an experiment stands after :func:`sequential_test`."""

    WAITING = "waiting"  # some arm has fewer sends than the minimum sample
    RUNNING = "running"  # monitored, no winner yet: keep sending
    WINNER = "winner"  # one arm beats every other at the configured confidence: stop
    INCONCLUSIVE = "inconclusive"  # every arm reached the maximum sample without a winner: stop


@dataclass(frozen=True, slots=True)
class ArmCounts:
    """One arm's results so far: ``sent`` recipients, ``successes`` of them converted.

    What counts as a success (an open, a click, an RSVP) is the campaign's choice; the
    statistics only need the two counts. Raises ExperimentError on negative counts or
    ``successes > sent``.
    """

    name: str
    sent: int
    successes: int

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ExperimentError("arm.name: must not be blank")
        if self.sent < 0 or self.successes < 0:
            raise ExperimentError(f"arm {self.name}: counts must not be negative")
        if self.successes > self.sent:
            raise ExperimentError(f"arm {self.name}: successes exceed sent")

    @property
    def rate(self) -> float:
        """The observed success rate, 0.0 before anything was sent."""
        return self.successes / self.sent if self.sent else 0.0


@dataclass(frozen=True, slots=True)
class ArmSummary:
    """What the results page shows for one arm.

    ``interval`` is the Wilson score interval of the rate at the experiment's confidence: a
    description of one arm taken alone, not the test that declares the winner.
    """

    name: str
    sent: int
    successes: int
    rate: float
    interval: tuple[float, float]
    probability_best: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """The sequential test's answer: a status, the winner (if any) and why, in plain words.

    ``leader`` is the arm with the highest rate (lowest index on ties); ``p_value`` is the
    largest always-valid p-value of the leader against each other arm (1.0 while waiting), and
    ``threshold`` the level it must reach: alpha split over the k-1 comparisons.
    """

    status: DecisionStatus
    winner: int | None
    leader: int
    p_value: float
    threshold: float
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    """:func:`decide`'s result: the verdict plus a summary of every arm, in the arms' order."""

    status: DecisionStatus
    winner: int | None
    reason: str
    p_value: float
    threshold: float
    arms: tuple[ArmSummary, ...]


def _unit(domain: bytes, experiment_key: str, contact_key: str) -> float:
    """A uniform number in [0, 1) from SHA-256 of the domain and both keys.

    Each key is length-prefixed so ("ab", "c") and ("a", "bc") hash differently.
    """
    digest = hashlib.sha256()
    digest.update(domain)
    for key in (experiment_key, contact_key):
        data = key.encode("utf-8")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    # 53 bits, the precision of a float, so the quotient is exact and always below 1.0.
    top = int.from_bytes(digest.digest()[:8], "big") >> (64 - _UNIT_BITS)
    return top / _UNIT_SCALE


def _check_weights(weights: Sequence[float]) -> None:
    if not MIN_ARMS <= len(weights) <= MAX_ARMS:
        raise ExperimentError(f"weights: need {MIN_ARMS} to {MAX_ARMS} arms, got {len(weights)}")
    for index, weight in enumerate(weights):
        if not math.isfinite(weight) or weight <= 0:
            raise ExperimentError(f"weights[{index}]: must be a positive finite number")


def assign_arm(experiment_key: str, contact_key: str, weights: Sequence[float]) -> int:
    """Return the index of the arm ``contact_key`` belongs to in ``experiment_key``.

    Deterministic: the same keys and weights always give the same arm, on any machine and in
    any Python version, so a re-run never moves a guest. Arms get shares of contacts
    proportional to ``weights`` (2 to 5 positive finite numbers, not necessarily summing to 1).
    Changing the weights moves some guests: in Thompson mode the campaign must store each
    guest's arm when it first assigns it. Raises ExperimentError on invalid weights.
    """
    _check_weights(weights)
    point = _unit(_ARM_DOMAIN, experiment_key, contact_key) * math.fsum(weights)
    cumulative = 0.0
    for index, weight in enumerate(weights):
        cumulative += weight
        if point < cumulative:
            return index
    return len(weights) - 1  # rounding left point at the very top: it belongs to the last arm


def in_test_fraction(experiment_key: str, contact_key: str, fraction: float) -> bool:
    """Return whether a contact is in the test fraction (the first N% that try the arms).

    Deterministic and independent of :func:`assign_arm` (another hash domain), so the test
    fraction is a fair sample of every arm. ``fraction`` is in (0, 1]; 1 sends every guest
    into the experiment. Raises ExperimentError otherwise.
    """
    if not math.isfinite(fraction) or not 0 < fraction <= 1:
        raise ExperimentError("fraction: must be in (0, 1]")
    return _unit(_FRACTION_DOMAIN, experiment_key, contact_key) < fraction


def _check_confidence(confidence: float) -> float:
    """Return alpha = 1 - confidence; raise ExperimentError outside [0.90, 0.999]."""
    if not math.isfinite(confidence) or not MIN_CONFIDENCE <= confidence <= MAX_CONFIDENCE:
        raise ExperimentError(
            f"confidence: must be between {MIN_CONFIDENCE} and {MAX_CONFIDENCE}, got {confidence}"
        )
    return round(1.0 - confidence, 12)  # 1 - 0.95 is 0.050000000000000044 in binary floats


def wilson_interval(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    """Return the two-sided Wilson score interval ``(low, high)`` for a binomial rate.

    ``confidence`` is in (0, 1). With no trials the interval is (0, 1). Raises ExperimentError
    on counts that are negative or inconsistent, or a confidence outside (0, 1).
    """
    if trials < 0 or successes < 0 or successes > trials:
        raise ExperimentError("wilson_interval: need 0 <= successes <= trials")
    if not 0 < confidence < 1:
        raise ExperimentError("wilson_interval: confidence must be in (0, 1)")
    if trials == 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    rate = successes / trials
    z2n = z * z / trials
    centre = (rate + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(rate * (1 - rate) / trials + z2n / (4 * trials))
    # At 0 or n successes the exact bound is 0 or 1; the formula gets there only up to rounding.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return (low, high)


def _check_arms(arms: Sequence[ArmCounts]) -> None:
    if not MIN_ARMS <= len(arms) <= MAX_ARMS:
        raise ExperimentError(f"arms: need {MIN_ARMS} to {MAX_ARMS} arms, got {len(arms)}")
    if len({arm.name for arm in arms}) != len(arms):
        raise ExperimentError("arms: names must be unique")


def probability_best(
    arms: Sequence[ArmCounts], *, draws: int = DEFAULT_DRAWS, seed: int = 0
) -> list[float]:
    """Return each arm's posterior probability of having the highest true rate.

    Each arm's rate has the posterior Beta(1 + successes, 1 + sent - successes) (a uniform
    prior); the probabilities are the shares of ``draws`` joint Monte Carlo draws that each arm
    wins, from ``random.Random(seed)``, so the same inputs give the same answer. They sum to 1;
    the Monte Carlo error is about 0.5/sqrt(draws) (0.005 at the default). Raises
    ExperimentError on invalid arms or ``draws < 1``.
    """
    _check_arms(arms)
    if draws < 1:
        raise ExperimentError("draws: must be at least 1")
    rng = random.Random(seed)
    shapes = [(1.0 + arm.successes, 1.0 + arm.sent - arm.successes) for arm in arms]
    wins = [0] * len(arms)
    for _ in range(draws):
        samples = [rng.betavariate(a, b) for a, b in shapes]
        wins[samples.index(max(samples))] += 1
    return [count / draws for count in wins]


def thompson_weights(
    arms: Sequence[ArmCounts],
    *,
    floor: float = THOMPSON_FLOOR,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
) -> list[float]:
    """Return the share of the next sends each arm should get (Thompson sampling).

    Each arm gets ``floor`` plus its probability of being best times what is left:
    ``floor + (1 - k * floor) * P(best)``. The shares sum to 1 and none is below ``floor``, so
    a losing arm keeps enough traffic for the test to go on learning about it. Feed the result
    to :func:`assign_arm` as the weights for guests not yet assigned. ``floor`` must be in
    [0, 1/k); a floor of 0 is allowed, but a zero share is then raised to a tiny positive one
    so the weights stay valid for :func:`assign_arm`. Raises ExperimentError otherwise.
    """
    _check_arms(arms)
    if not math.isfinite(floor) or not 0 <= floor < 1 / len(arms):
        raise ExperimentError(f"floor: must be in [0, 1/{len(arms)})")
    best = probability_best(arms, draws=draws, seed=seed)
    spare = 1.0 - len(arms) * floor
    shares = [max(floor + spare * p, 1e-9) for p in best]
    total = math.fsum(shares)
    return [share / total for share in shares]


def msprt_p_value(
    first: ArmCounts, second: ArmCounts, *, mixing_variance: float = DEFAULT_MIXING_VARIANCE
) -> float:
    """Return the always-valid p-value for "the two arms have the same rate", at this look.

    The mSPRT statistic for the difference d = rate(second) - rate(first), with the normal
    approximation d ~ N(theta, V) and a normal mixture theta ~ N(0, tau^2)::

        Lambda = sqrt(V / (V + tau^2)) * exp(d^2 * tau^2 / (2 * V * (V + tau^2)))

    V is the variance of d under the null, from the pooled rate: p(1-p)(1/n1 + 1/n2). The
    p-value is min(1, 1/Lambda). Lambda is (approximately) a martingale under the null, so by
    Ville's inequality P(ever 1/Lambda <= alpha) <= alpha: stopping at the first look where the
    p-value is below alpha keeps the error rate at alpha under continuous monitoring. Returns
    1.0 when either arm has no sends or the pooled rate is 0 or 1 (no evidence yet).
    """
    if not math.isfinite(mixing_variance) or mixing_variance <= 0:
        raise ExperimentError("mixing_variance: must be a positive finite number")
    if first.sent == 0 or second.sent == 0:
        return 1.0
    pooled = (first.successes + second.successes) / (first.sent + second.sent)
    variance = pooled * (1 - pooled) * (1 / first.sent + 1 / second.sent)
    if variance <= 0:
        return 1.0
    diff = second.rate - first.rate
    total = variance + mixing_variance
    log_lambda = 0.5 * math.log(variance / total) + (
        diff * diff * mixing_variance / (2 * variance * total)
    )
    return 1.0 if log_lambda <= 0 else math.exp(-log_lambda)


def _percent(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def _p_text(p_value: float) -> str:
    return f"{p_value:.2g}" if p_value >= 0.0001 else f"{p_value:.1e}"


def sequential_test(
    arms: Sequence[ArmCounts],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    min_sample_per_arm: int,
    max_sample_per_arm: int | None = None,
    mixing_variance: float = DEFAULT_MIXING_VARIANCE,
) -> Verdict:
    """Return whether an arm has won, by the always-valid mSPRT; call it after every batch.

    The leader (highest rate) wins when every arm has at least ``min_sample_per_arm`` sends
    and the leader's always-valid p-value (:func:`msprt_p_value`) against *each* other arm is
    at most alpha / (k - 1), alpha = 1 - ``confidence`` (Bonferroni: a wrong winner needs its
    comparison with a truly best arm to reject, and there are at most k - 1 of those). When
    every arm has reached ``max_sample_per_arm`` without a winner the verdict is INCONCLUSIVE.
    The first WINNER or INCONCLUSIVE verdict ends the experiment: the guarantee is about the
    first time the test stops, so the caller stores it and stops calling. Raises
    ExperimentError on invalid arms, a confidence outside [0.90, 0.999] or bad sample sizes.
    """
    _check_arms(arms)
    alpha = _check_confidence(confidence)
    if min_sample_per_arm < 1:
        raise ExperimentError("min_sample_per_arm: must be at least 1")
    if max_sample_per_arm is not None and max_sample_per_arm < min_sample_per_arm:
        raise ExperimentError("max_sample_per_arm: must not be below min_sample_per_arm")
    threshold = alpha / (len(arms) - 1)
    rates = [arm.rate for arm in arms]
    leader = rates.index(max(rates))
    smallest = min(arm.sent for arm in arms)
    if smallest < min_sample_per_arm:
        reason = f"waiting: {smallest:,} of the {min_sample_per_arm:,} minimum per arm"
        return Verdict(DecisionStatus.WAITING, None, leader, 1.0, threshold, reason)
    others = [index for index in range(len(arms)) if index != leader]
    p_values = {
        index: msprt_p_value(arms[index], arms[leader], mixing_variance=mixing_variance)
        for index in others
    }
    # The binding comparison is the one with the largest p-value (usually the runner-up).
    runner_up = max(others, key=lambda index: (p_values[index], rates[index]))
    p_value = p_values[runner_up]
    level = f"{_p_text(threshold)}" + (
        f" ({_p_text(alpha)} split over {len(others)} comparisons)" if len(others) > 1 else ""
    )
    lead = (
        f"arm {arms[leader].name} leads with {_percent(rates[leader])} "
        f"vs {_percent(rates[runner_up])} for arm {arms[runner_up].name}"
    )
    if p_value <= threshold:
        reason = f"{lead}; the always-valid p-value {_p_text(p_value)} is below {level}"
        return Verdict(DecisionStatus.WINNER, leader, leader, p_value, threshold, reason)
    if max_sample_per_arm is not None and smallest >= max_sample_per_arm:
        reason = (
            f"no winner: every arm reached the {max_sample_per_arm:,} maximum; {lead}, but the "
            f"always-valid p-value {_p_text(p_value)} is above {level}"
        )
        return Verdict(DecisionStatus.INCONCLUSIVE, None, leader, p_value, threshold, reason)
    reason = f"no winner yet: {lead}; the always-valid p-value {_p_text(p_value)} is above {level}"
    return Verdict(DecisionStatus.RUNNING, None, leader, p_value, threshold, reason)


def decide(
    arms: Sequence[ArmCounts],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    min_sample_per_arm: int,
    max_sample_per_arm: int | None = None,
    mixing_variance: float = DEFAULT_MIXING_VARIANCE,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
) -> Decision:
    """Return the experiment's decision and the per-arm summaries for the results page.

    The winner, status and reason are exactly :func:`sequential_test`'s; the summaries add each
    arm's rate, Wilson interval at ``confidence`` and probability of being best
    (:func:`probability_best` with ``draws`` and ``seed``). The probability of being best is
    shown, never used to declare the winner: it is not valid under continuous monitoring.
    Raises ExperimentError as :func:`sequential_test` does.
    """
    verdict = sequential_test(
        arms,
        confidence=confidence,
        min_sample_per_arm=min_sample_per_arm,
        max_sample_per_arm=max_sample_per_arm,
        mixing_variance=mixing_variance,
    )
    best = probability_best(arms, draws=draws, seed=seed)
    summaries = tuple(
        ArmSummary(
            name=arm.name,
            sent=arm.sent,
            successes=arm.successes,
            rate=arm.rate,
            interval=wilson_interval(arm.successes, arm.sent, confidence),
            probability_best=chance,
        )
        for arm, chance in zip(arms, best, strict=True)
    )
    return Decision(
        status=verdict.status,
        winner=verdict.winner,
        reason=verdict.reason,
        p_value=verdict.p_value,
        threshold=verdict.threshold,
        arms=summaries,
    )
