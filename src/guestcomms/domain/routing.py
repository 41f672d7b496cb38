"""Routing: which of a channel's providers to try, in what order.

Every strategy turns the configured candidates into an *ordered plan*: the first name is the
provider to try first, the rest are the fallbacks to move to, in order, after a failed attempt.
Providers whose circuit breaker would refuse a call right now are left out, and so are the
names in ``exclude`` (the worker passes the providers that already failed this delivery).

Strategies:

* ``priority_failover``: lowest ``priority`` number first (ties by name).
* ``weighted``: the first pick is drawn with probability proportional to ``weight``, the next
  from those left, and so on (weighted sampling without replacement); weight 0 providers are
  only ever fallbacks, in priority order. Deterministic for a given ``random.Random``.
* ``round_robin``: the candidates sorted by name, rotated one step per plan by a counter kept per
  set of candidate names (see :class:`RoundRobin`).
* ``least_outstanding``: fewest sends in flight first (ties by priority, then name).
* ``lowest_cost``: cheapest ``cost_per_message`` first; an unknown cost sorts last.

An empty plan means no provider may be tried now (all excluded or behind open breakers): the
worker then defers the delivery (e.g. to the earliest ``CircuitBreaker.half_open_at()``).

Pure: no I/O. :class:`Router` is the policy object the worker asks; the only state it keeps is
the round-robin counter and the random generator it was given.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from guestcomms.domain.breaker import CircuitBreaker


class Strategy(StrEnum):
    """How a channel's providers are ranked."""

    PRIORITY_FAILOVER = "priority_failover"
    WEIGHTED = "weighted"
    ROUND_ROBIN = "round_robin"
    LEAST_OUTSTANDING = "least_outstanding"
    LOWEST_COST = "lowest_cost"


@dataclass(frozen=True, slots=True)
class ProviderChoice:
    """One configured provider of a channel, as the router sees it.

    ``priority``: lower is preferred. ``weight``: relative share for the weighted strategy
    (>= 0). ``cost_per_message``: in the account's currency, None when unknown.
    ``outstanding``: sends currently in flight to this provider (the worker's count).
    """

    name: str
    priority: int = 0
    weight: float = 1.0
    cost_per_message: float | None = None
    outstanding: int = 0

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a provider needs a name")
        if not self.weight >= 0:  # also refuses NaN
            raise ValueError(f"provider {self.name!r}: weight must be >= 0")
        if self.outstanding < 0:
            raise ValueError(f"provider {self.name!r}: outstanding must be >= 0")


def _by_priority(choice: ProviderChoice) -> tuple[int, str]:
    return (choice.priority, choice.name)


def priority_failover(candidates: Sequence[ProviderChoice]) -> list[ProviderChoice]:
    """Lowest priority number first; equal priorities by name."""
    return sorted(candidates, key=_by_priority)


def weighted(candidates: Sequence[ProviderChoice], *, rng: random.Random) -> list[ProviderChoice]:
    """Weighted sampling without replacement; zero-weight providers last, by priority."""
    pool = sorted((c for c in candidates if c.weight > 0), key=_by_priority)
    order: list[ProviderChoice] = []
    while pool:
        total = sum(c.weight for c in pool)
        point = rng.random() * total
        index = len(pool) - 1  # float rounding can leave ``point`` just past the last bound
        for i, choice in enumerate(pool):
            point -= choice.weight
            if point < 0:
                index = i
                break
        order.append(pool.pop(index))
    order.extend(sorted((c for c in candidates if c.weight <= 0), key=_by_priority))
    return order


@dataclass(slots=True)
class RoundRobin:
    """A rotation counter per set of candidate names, so one object can serve many channels.

    Each ``order`` call advances that set's counter by one. The rotation is over all the
    candidates, before breakers and exclusions filter them, so a skipped provider's turn goes
    to the next one in line.
    """

    _counters: dict[tuple[str, ...], int] = field(default_factory=dict)

    def order(self, candidates: Sequence[ProviderChoice]) -> list[ProviderChoice]:
        """The candidates by name, rotated by this set's counter; advances the counter."""
        ring = sorted(candidates, key=lambda c: c.name)
        if not ring:
            return []
        key = tuple(c.name for c in ring)
        turn = self._counters.get(key, 0)
        self._counters[key] = (turn + 1) % len(ring)
        start = turn % len(ring)
        return ring[start:] + ring[:start]


def least_outstanding(candidates: Sequence[ProviderChoice]) -> list[ProviderChoice]:
    """Fewest sends in flight first; ties by priority, then name."""
    return sorted(candidates, key=lambda c: (c.outstanding, c.priority, c.name))


def lowest_cost(candidates: Sequence[ProviderChoice]) -> list[ProviderChoice]:
    """Cheapest first; unknown cost last; ties by priority, then name."""

    def key(c: ProviderChoice) -> tuple[bool, float, int, str]:
        unknown = c.cost_per_message is None
        return (
            unknown,
            0.0 if c.cost_per_message is None else c.cost_per_message,
            *_by_priority(c),
        )

    return sorted(candidates, key=key)


class Router:
    """The routing policy: ``plan`` returns the ordered provider names to try for one delivery.

    Give it a seeded ``random.Random`` for reproducible weighted plans. Keep one Router per
    worker (it holds the round-robin counters). It is not thread-safe; ``plan`` never awaits, so
    the tasks of one event loop can share it.
    """

    def __init__(self, *, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._round_robin = RoundRobin()
        self._orderers: dict[Strategy, Callable[[Sequence[ProviderChoice]], list[ProviderChoice]]]
        self._orderers = {
            Strategy.PRIORITY_FAILOVER: priority_failover,
            Strategy.WEIGHTED: lambda cs: weighted(cs, rng=self._rng),
            Strategy.ROUND_ROBIN: self._round_robin.order,
            Strategy.LEAST_OUTSTANDING: least_outstanding,
            Strategy.LOWEST_COST: lowest_cost,
        }

    def plan(
        self,
        candidates: Sequence[ProviderChoice],
        *,
        strategy: Strategy,
        breakers: Mapping[str, CircuitBreaker],
        now: float,
        exclude: Collection[str] = (),
    ) -> list[str]:
        """Provider names to try, best first; may be empty.

        ``breakers`` maps a provider name to its breaker (a provider without one counts as
        closed); ``now`` is on the breakers' clock. Breakers are only asked ``available``: the
        worker still calls ``allow`` on the provider it actually tries, which reserves a
        half-open trial slot. Raises ValueError when two candidates share a name.
        """
        names = [c.name for c in candidates]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate provider names in {names}")
        ordered = self._orderers[Strategy(strategy)](candidates)
        plan: list[str] = []
        for choice in ordered:
            if choice.name in exclude:
                continue
            breaker = breakers.get(choice.name)
            if breaker is not None and not breaker.available(now):
                continue
            plan.append(choice.name)
        return plan
