"""Pure analytics: counters, rates with Wilson intervals, a baseline score, recommendations.

Nothing here does I/O. ``Counters`` adds up rollup rows and raw tail rows alike; ``rates``
turns them into proportions with 95% intervals; ``score`` compares them with the
organization's own baseline; ``recommend`` says in plain words what the figures call for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from operator import add, attrgetter

from guestcomms.domain.experiments import wilson_interval

CONFIDENCE = 0.95
MIN_SAMPLE = 50  # deliveries below which a rate says too little to recommend anything on
SCORE_NEUTRAL = 50.0  # the score of figures equal to the baseline (0..100)

# Thresholds of the recommendations, as fractions.
HIGH_BOUNCE_RATE = 0.05
HIGH_COMPLAINT_RATE = 0.001
HIGH_UNSUBSCRIBE_RATE = 0.01
HIGH_BLOCK_RATE = 0.05
HIGH_FAILURE_RATE = 0.02
LOW_DELIVERY_RATE = 0.95
HIGH_MACHINE_OPEN_SHARE = 0.3


@dataclass(slots=True)
class Counters:
    """The figures of a scope over a time range; deliveries are counted once per figure."""

    sent: int = 0
    delivered: int = 0
    bounced_hard: int = 0
    bounced_soft: int = 0
    complained: int = 0
    unsubscribed: int = 0
    blocked: int = 0
    failed: int = 0
    opened: int = 0  # unique human opens
    opened_total: int = 0
    opened_machine: int = 0
    clicked: int = 0  # unique human clicks
    clicked_total: int = 0
    clicked_machine: int = 0

    def add(self, other: Counters | Mapping[str, int]) -> None:
        """Add ``other`` (counters, or a mapping of some counter names) to these."""
        if isinstance(other, Counters):  # the hot path: a report adds hundreds of hours
            for name, value in zip(
                COUNTER_NAMES, map(add, _values(self), _values(other)), strict=True
            ):
                setattr(self, name, value)
            return
        for name, value in other.items():
            setattr(self, name, getattr(self, name) + int(value or 0))

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return {name: getattr(self, name) for name in COUNTER_NAMES}

    @property
    def bounced(self) -> int:
        """Hard and soft bounces."""
        return self.bounced_hard + self.bounced_soft


COUNTER_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Counters))
_values = attrgetter(*COUNTER_NAMES)  # every counter, in order, in one C call


@dataclass(frozen=True, slots=True)
class Rate:
    """A proportion with its Wilson interval; ``value`` is None with no trials."""

    successes: int
    trials: int
    value: float | None
    low: float
    high: float


def rate(successes: int, trials: int) -> Rate:
    """``successes / trials`` with its 95% Wilson interval (successes capped at trials)."""
    successes = min(max(successes, 0), max(trials, 0))
    low, high = wilson_interval(successes, max(trials, 0), CONFIDENCE)
    value = successes / trials if trials > 0 else None
    return Rate(successes=successes, trials=max(trials, 0), value=value, low=low, high=high)


def rates(c: Counters) -> dict[str, Rate]:
    """Every rate of ``c``, each with what it divides by (see docs/api.md, Analytics)."""
    return {
        "delivery_rate": rate(c.delivered, c.sent),
        "open_rate": rate(c.opened, c.delivered),
        "click_rate": rate(c.clicked, c.delivered),
        "click_to_open_rate": rate(c.clicked, c.opened),
        "bounce_rate": rate(c.bounced, c.sent),
        "hard_bounce_rate": rate(c.bounced_hard, c.sent),
        "soft_bounce_rate": rate(c.bounced_soft, c.sent),
        "complaint_rate": rate(c.complained, c.delivered),
        "unsubscribe_rate": rate(c.unsubscribed, c.delivered),
        "block_rate": rate(c.blocked, c.sent + c.blocked),
        "failure_rate": rate(c.failed, c.sent + c.failed),
        "machine_open_share": rate(c.opened_machine, c.opened_machine + c.opened_total),
    }


# Rates the score weighs: name -> (weight, higher is better).
_SCORED: dict[str, tuple[float, bool]] = {
    "delivery_rate": (1.0, True),
    "open_rate": (1.0, True),
    "click_rate": (1.5, True),
    "bounce_rate": (1.5, False),
    "complaint_rate": (2.0, False),
    "unsubscribe_rate": (1.0, False),
}
_RATE_FLOOR = 0.001  # a baseline of 0% compares as 0.1%, so one bounce is not "infinitely" worse


def score(current: Counters, baseline: Counters) -> float | None:
    """0..100: 50 when ``current`` matches the baseline, higher when better.

    Each scored rate with enough trials on both sides contributes its relative difference from
    the baseline, capped at +-100% and signed so that better is positive, weighted; the
    weighted mean maps -1..1 to 0..100. None when no rate has enough trials on both sides.
    """
    now, before = rates(current), rates(baseline)
    total = weights = 0.0
    for name, (weight, higher_is_better) in _SCORED.items():
        a, b = now[name], before[name]
        if a.value is None or b.value is None or a.trials < MIN_SAMPLE or b.trials < MIN_SAMPLE:
            continue
        diff = (a.value - b.value) / max(b.value, _RATE_FLOOR)
        total += weight * max(-1.0, min(1.0, diff if higher_is_better else -diff))
        weights += weight
    if weights == 0:
        return None
    return round(SCORE_NEUTRAL * (1 + total / weights), 1)


@dataclass(frozen=True, slots=True)
class Context:
    """What the recommendations name: the scope in words, e.g. ``campaign "Save the date"``."""

    label: str
    baseline: Counters = field(default_factory=Counters)


def recommend(c: Counters, context: Context) -> list[str]:
    """Plain-language advice, each with the figure that calls for it; most urgent first."""
    r, base = rates(c), rates(context.baseline)
    on = context.label
    advice: list[str] = []
    if _over(r["complaint_rate"], HIGH_COMPLAINT_RATE):
        advice.append(
            f"Complaint rate {_pct(r['complaint_rate'], 2)} ({c.complained} spam reports) on "
            f"{on}: send only to guests who asked to hear from you, and keep the unsubscribe "
            "link easy to find."
        )
    if _over(r["bounce_rate"], HIGH_BOUNCE_RATE):
        advice.append(
            f"Bounce rate {_pct(r['bounce_rate'])} ({c.bounced_hard} hard, {c.bounced_soft} "
            f"soft) on {on}: clean the list: remove the addresses that bounced and confirm "
            "the others before the next send."
        )
    if _over(r["block_rate"], HIGH_BLOCK_RATE):
        advice.append(
            f"{_pct(r['block_rate'])} of deliveries on {on} were blocked ({c.blocked}): "
            "record consent for these guests or remove suppressed addresses before sending."
        )
    if _over(r["failure_rate"], HIGH_FAILURE_RATE):
        advice.append(
            f"{_pct(r['failure_rate'])} of deliveries on {on} failed ({c.failed}): check the "
            "provider account and the errors in the deliveries' history."
        )
    if _over(r["unsubscribe_rate"], HIGH_UNSUBSCRIBE_RATE):
        advice.append(
            f"Unsubscribe rate {_pct(r['unsubscribe_rate'])} ({c.unsubscribed}) on {on}: "
            "send less often or only what these guests need."
        )
    delivery = r["delivery_rate"]
    if delivery.trials >= MIN_SAMPLE and delivery.high < LOW_DELIVERY_RATE:
        advice.append(
            f"Only {_pct(delivery)} of sent messages on {on} were delivered: check the "
            "addresses and the sending domain's authentication (SPF, DKIM, DMARC)."
        )
    advice += _below_baseline(r, base, on)
    if _over(r["machine_open_share"], HIGH_MACHINE_OPEN_SHARE):
        advice.append(
            f"{_pct(r['machine_open_share'])} of opens on {on} came from machines (privacy "
            "proxies, security scanners): judge engagement by clicks rather than opens."
        )
    return advice


def _below_baseline(r: Mapping[str, Rate], base: Mapping[str, Rate], on: str) -> list[str]:
    """Open and click rates significantly below the organization's usual ones."""
    out: list[str] = []
    hints = {
        "open_rate": ("Open rate", "try a clearer subject line or another send time."),
        "click_rate": ("Click rate", "put one clear call to action near the top."),
    }
    for name, (title, hint) in hints.items():
        now, usual = r[name], base[name]
        if now.trials < MIN_SAMPLE or usual.trials < MIN_SAMPLE or usual.value is None:
            continue
        if now.high < usual.value:  # below the usual even at the top of its interval
            out.append(f"{title} {_pct(now)} on {on} is below your usual {_pct(usual)}: {hint}")
    return out


def _over(r: Rate, threshold: float) -> bool:
    """True when enough trials show a rate over ``threshold`` (its value, not its interval:
    a plainly high rate on a small list is still worth acting on)."""
    return r.trials >= MIN_SAMPLE and r.value is not None and r.value > threshold


def _pct(r: Rate, digits: int = 1) -> str:
    return f"{(r.value or 0.0) * 100:.{digits}f}%"


def total(rows: Iterable[Counters]) -> Counters:
    """The sum of ``rows``."""
    sums = [0] * len(COUNTER_NAMES)
    for row in rows:
        sums = list(map(add, sums, _values(row)))
    return Counters(*sums)
