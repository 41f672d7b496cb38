"""Circuit breaker: a pure state machine per provider that takes a failing provider out of rotation.

    closed ──(failure_threshold consecutive failures)──▶ open
    open ──(cooldown_seconds elapsed)──▶ half_open
    half_open ──(success_threshold successes)──▶ closed
    half_open ──(any failure)──▶ open (the cool-down starts again)

Failures are counted as *consecutive* failures: one success in the closed state resets the
count. This is simpler to reason about than a failure rate over a rolling window and still
opens within ``failure_threshold`` calls of a provider going down, which is what routing needs.

Time is always passed in (``now``: seconds on one clock the caller chooses, e.g.
``time.monotonic()`` in one process or Redis server time when the snapshot is shared), so the
machine is deterministic and testable. It does no I/O and no asyncio.

The caller decides what counts:

* ``record_failure`` for a sign that the provider itself is unhealthy: a transient error, an
  HTTP 5xx, a timeout, a refused or reset connection;
* ``record_success`` for an accepted send **and** for a permanent refusal (a 4xx about this
  recipient or payload): the provider answered, so it is up;
* ``release`` for outcomes that say nothing about health (a 429 rate limit, a send cancelled
  before it reached the provider): it frees a half-open probe slot without counting anything.

In the half-open state ``allow`` reserves one of ``half_open_probes`` trial slots; the next
``record_*``/``release`` frees the oldest reservation. A reservation that is never answered
(a crashed worker) lapses after ``probe_timeout_seconds``, so the breaker cannot get stuck.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

SNAPSHOT_FORMAT = 1  # bumped when the shape of ``to_dict()`` changes


class BreakerState(StrEnum):
    """Where a breaker is: ``closed`` lets calls through, ``open`` refuses them all,
    ``half_open`` lets a few trial calls through."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class InvalidBreakerSnapshotError(ValueError):
    """A breaker snapshot could not be read (wrong shape, types or format version)."""


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """The tunables of a breaker; they come from the provider's settings, not the snapshot."""

    failure_threshold: int = 5  # consecutive failures that open the breaker
    cooldown_seconds: float = 30.0  # time spent open before trial calls are let through
    half_open_probes: int = 1  # concurrent trial calls allowed while half-open
    success_threshold: int = 1  # trial successes needed to close again
    probe_timeout_seconds: float = 60.0  # an unanswered trial reservation lapses after this

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if self.half_open_probes < 1:
            raise ValueError("half_open_probes must be at least 1")
        if self.success_threshold < 1:
            raise ValueError("success_threshold must be at least 1")
        if self.cooldown_seconds < 0 or self.probe_timeout_seconds <= 0:
            raise ValueError("cooldown_seconds must be >= 0 and probe_timeout_seconds > 0")


class CircuitBreaker:
    """One provider's breaker. Mutable, pure: methods change its fields and nothing else.

    ``allow(now)`` answers whether a call may go to the provider now (and, half-open, reserves a
    trial slot); ``available(now)`` answers the same question without reserving anything (for
    routing, which ranks providers before trying one). ``state(now)`` is the effective state:
    an open breaker whose cool-down has passed reads as half-open even before anyone calls
    ``allow``. ``to_dict()``/``from_dict()`` round-trip everything but the config.
    """

    __slots__ = (
        "_consecutive_failures",
        "_half_open_successes",
        "_opened_at",
        "_probes",
        "_state",
        "config",
    )

    def __init__(self, config: BreakerConfig | None = None) -> None:
        self.config = config or BreakerConfig()
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0
        self._opened_at: float | None = None
        self._probes: list[float] = []  # trial reservation times, oldest first
        self._half_open_successes = 0

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.to_dict()!r}, config={self.config!r})"

    # -- queries -------------------------------------------------------------------------

    def state(self, now: float) -> BreakerState:
        """The effective state at ``now`` (open turns half-open once the cool-down is over)."""
        if self._state is BreakerState.OPEN and self._cooldown_over(now):
            return BreakerState.HALF_OPEN
        return self._state

    def available(self, now: float) -> bool:
        """True when ``allow(now)`` would return True; reserves nothing."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        return len(self._live_probes(now)) < self.config.half_open_probes

    @property
    def consecutive_failures(self) -> int:
        """Failures in a row counted while closed (0 after any success)."""
        return self._consecutive_failures

    def half_open_at(self) -> float | None:
        """When an open breaker starts letting trial calls through, or None if it is not open."""
        if self._state is not BreakerState.OPEN or self._opened_at is None:
            return None
        return self._opened_at + self.config.cooldown_seconds

    # -- transitions ---------------------------------------------------------------------

    def allow(self, now: float) -> bool:
        """May a call go to the provider at ``now``? Half-open, a True reserves a trial slot."""
        self._advance(now)
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            return False
        self._probes = self._live_probes(now)
        if len(self._probes) >= self.config.half_open_probes:
            return False
        self._probes.append(now)
        return True

    def record_success(self, now: float) -> None:
        """The provider answered: reset the failure count, or count a trial success."""
        self._advance(now)
        if self._state is BreakerState.CLOSED:
            self._consecutive_failures = 0
        elif self._state is BreakerState.HALF_OPEN:
            self._free_probe()
            self._half_open_successes += 1
            if self._half_open_successes >= self.config.success_threshold:
                self._close()
        # Open: a late answer to a call made before the breaker opened proves nothing.

    def record_failure(self, now: float) -> None:
        """The provider looks unhealthy: count it, and open the breaker at the threshold."""
        self._advance(now)
        if self._state is BreakerState.CLOSED:
            self._consecutive_failures += 1
            if self._consecutive_failures >= self.config.failure_threshold:
                self._open(now)
        elif self._state is BreakerState.HALF_OPEN:
            self._open(now)
        # Open: a late failure must not push the end of the cool-down further away.

    def release(self, now: float) -> None:
        """Free a trial slot without counting an outcome (429, cancelled before sending)."""
        self._advance(now)
        if self._state is BreakerState.HALF_OPEN:
            self._free_probe()

    # -- snapshot ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, object]:
        """A JSON-serialisable snapshot of the state (not the config)."""
        return {
            "format": SNAPSHOT_FORMAT,
            "state": self._state.value,
            "consecutive_failures": self._consecutive_failures,
            "opened_at": self._opened_at,
            "probes": list(self._probes),
            "half_open_successes": self._half_open_successes,
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, object], *, config: BreakerConfig | None = None
    ) -> CircuitBreaker:
        """Rebuild a breaker from ``to_dict()`` output; raises InvalidBreakerSnapshotError."""
        if data.get("format") != SNAPSHOT_FORMAT:
            raise InvalidBreakerSnapshotError(f"unknown snapshot format {data.get('format')!r}")
        try:
            state = BreakerState(str(data["state"]))
            failures = _as_count(data["consecutive_failures"])
            raw_opened_at = data["opened_at"]
            opened_at = None if raw_opened_at is None else _as_float(raw_opened_at)
            raw_probes = data["probes"]
            if not isinstance(raw_probes, list):
                raise ValueError("probes must be a list")
            probes = [_as_float(p) for p in raw_probes]
            successes = _as_count(data["half_open_successes"])
        except (KeyError, ValueError) as e:
            raise InvalidBreakerSnapshotError(f"invalid breaker snapshot: {e}") from e
        if state is BreakerState.OPEN and opened_at is None:
            raise InvalidBreakerSnapshotError("invalid breaker snapshot: open without opened_at")
        breaker = cls(config)
        breaker._state = state
        breaker._consecutive_failures = failures
        breaker._opened_at = opened_at
        breaker._probes = probes
        breaker._half_open_successes = successes
        return breaker

    # -- internals -----------------------------------------------------------------------

    def _cooldown_over(self, now: float) -> bool:
        return self._opened_at is None or now >= self._opened_at + self.config.cooldown_seconds

    def _advance(self, now: float) -> None:
        if self._state is BreakerState.OPEN and self._cooldown_over(now):
            self._state = BreakerState.HALF_OPEN
            self._probes = []
            self._half_open_successes = 0

    def _live_probes(self, now: float) -> list[float]:
        deadline = now - self.config.probe_timeout_seconds
        return [t for t in self._probes if t > deadline]

    def _free_probe(self) -> None:
        if self._probes:
            self._probes.pop(0)

    def _open(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._consecutive_failures = 0
        self._probes = []
        self._half_open_successes = 0

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._opened_at = None
        self._consecutive_failures = 0
        self._probes = []
        self._half_open_successes = 0


def _as_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def _as_count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return value
