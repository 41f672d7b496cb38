"""Per-provider rate limiters and breaker-state stores: in-process, or shared through Redis.

Rate limiters implement :class:`RateLimiter`: ``await acquire(key, rate_per_second=...,
burst=...)`` returns when the caller may make one call under ``key`` (a provider name), or
raises :class:`RateLimitWaitTooLongError` at once, having taken nothing, when the wait would be
longer than the limiter's ``max_wait_seconds`` (the worker then defers the delivery by
``retry_after_seconds`` instead of holding its lease while it sleeps).

Both limiters run the token bucket of :mod:`guestcomms.domain.ratelimit` in *reservation* mode:
a caller takes its token at once (into debt if need be), learns exactly how long to wait, and
sleeps outside any lock; callers are served first come, first served. A caller cancelled while
it sleeps forfeits its token, which errs on the side of sending less, never more.

* :class:`InProcessRateLimiter`: one bucket per key in this process, on ``time.monotonic``. The
  reservation runs without an ``await``, so it is atomic on the event loop and needs no lock.
  An ``urgent`` caller (an emergency) does not queue behind the reservations of a bulk batch
  (up to ``max_wait_seconds`` of them): it takes its token at once, into debt, and waits only
  for the pacer's next slot, which the bulk callers then leave to it (the pacer spaces every
  grant, urgent or not, so the provider still sees the rate).
* The shared Redis limiter has no urgent path yet: an emergency there waits its turn behind
  the reservations already made (at most ``max_wait_seconds``).
* :class:`RedisRateLimiter`: the same bucket in a Redis hash per key (``guestcomms:rl:<key>``),
  updated by one Lua script run with EVALSHA, on Redis server ``TIME``, so every process on
  every machine shares one bucket and one clock. One round trip per acquire.

Breaker stores implement :class:`BreakerStore`: a versioned :class:`CircuitBreaker` snapshot per
provider, saved by compare-and-set. :func:`update_breaker` loads, applies a pure change, and
saves only if the snapshot changed and nobody saved in between (else it retries). The store owns
the clock its snapshots are in (``BreakerRecord.now``): ``time.monotonic`` in process, Redis
``TIME`` when shared, because monotonic clocks of different machines do not agree.

Redis errors surface as :class:`SharedStateUnavailableError` (raised ``from`` the Redis error).
Needs Redis >= 5 (scripts that call ``TIME`` and then write).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from guestcomms.domain.breaker import BreakerConfig, CircuitBreaker, InvalidBreakerSnapshotError
from guestcomms.domain.ratelimit import TokenBucket
from guestcomms.errors import GuestcommsError

log = structlog.get_logger("guestcomms.ratelimit")

DEFAULT_MAX_WAIT_SECONDS = 10.0  # longer waits are deferred, not slept through under a lease
RATE_LIMIT_KEY_PREFIX = "guestcomms:rl:"
BREAKER_KEY_PREFIX = "guestcomms:cb:"
BREAKER_UPDATE_ATTEMPTS = 5  # compare-and-set tries before a breaker update is given up
REDIS_KEY_SLACK_SECONDS = 1  # kept past the moment an idle bucket would be full again

T = TypeVar("T")


class RateLimitWaitTooLongError(GuestcommsError):
    """Waiting for a rate-limit token would take longer than allowed."""

    def __init__(self, *, key: str, retry_after_seconds: float) -> None:
        super().__init__(
            f"rate limit for {key!r}: next token in {retry_after_seconds:.3f} s, over the max wait"
        )
        self.key = key
        self.retry_after_seconds = retry_after_seconds


class SharedStateUnavailableError(GuestcommsError):
    """Redis, which holds the shared rate limits and breaker state, did not answer."""

    status = 503
    slug = "shared-state-unavailable"
    title = "Shared state unavailable"


class RateLimiter(Protocol):
    """Waits for one token of ``key``'s bucket (``rate_per_second`` refill, ``burst`` size)."""

    async def acquire(
        self, key: str, *, rate_per_second: float, burst: int, urgent: bool = False
    ) -> None:
        """Return when one call may be made; raise RateLimitWaitTooLongError if too far off.
        ``urgent`` (an emergency) may go ahead of calls already waiting, where supported."""
        ...


def _check_limits(key: str, *, rate_per_second: float, burst: int) -> None:
    if not key:
        raise ValueError("a rate-limit key must not be empty")
    if not (rate_per_second > 0 and math.isfinite(rate_per_second)):
        raise ValueError("rate_per_second must be a positive number")
    if burst < 1:
        raise ValueError("burst must be at least 1")


def _check_max_wait(seconds: float) -> float:
    if not (seconds >= 0 and math.isfinite(seconds)):
        raise ValueError("max_wait_seconds must be a finite number >= 0")
    return float(seconds)


class InProcessRateLimiter:
    """Token buckets in this process's memory; right for one worker process (SQLite mode).

    ``clock`` (monotonic seconds) is injectable for tests. A change of ``rate_per_second`` or
    ``burst`` for a key keeps its current tokens (capped at the new burst).
    """

    def __init__(
        self,
        *,
        max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_wait_seconds = _check_max_wait(max_wait_seconds)
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._pacers: dict[str, _Pacer] = {}

    async def acquire(
        self, key: str, *, rate_per_second: float, burst: int, urgent: bool = False
    ) -> None:
        """Return when one call may be made; raise RateLimitWaitTooLongError if too far off.

        ``urgent`` skips the queue of reservations (see the module docstring).
        """
        _check_limits(key, rate_per_second=rate_per_second, burst=burst)
        now = self._clock()
        bucket = self._bucket(key, now=now, rate_per_second=rate_per_second, burst=burst)
        pacer = self._pacers.setdefault(key, _Pacer())
        if urgent:
            wait = pacer.reserve_urgent(
                now, rate_per_second=rate_per_second, burst=burst, max_wait=self.max_wait_seconds
            )
            if wait is None:
                raise RateLimitWaitTooLongError(key=key, retry_after_seconds=self.max_wait_seconds)
            bucket.reserve(now)  # counted, so later reservations queue behind it
            if wait > 0:
                await asyncio.sleep(wait)
            return
        # No await between reading and updating the bucket: atomic on the event loop.
        wait = bucket.reserve(now, max_wait_seconds=self.max_wait_seconds)
        if wait is None:
            raise RateLimitWaitTooLongError(key=key, retry_after_seconds=bucket.wait_seconds(now))
        if wait > 0:
            await asyncio.sleep(wait)
        await pacer.pace(self._clock, rate_per_second=rate_per_second, burst=burst)

    def _bucket(self, key: str, *, now: float, rate_per_second: float, burst: int) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate_per_second, burst)
        elif bucket.rate_per_second != rate_per_second or bucket.burst != burst:
            tokens = bucket.available(now)
            bucket = TokenBucket(rate_per_second, burst, tokens=tokens, updated_at=now)
            self._buckets[key] = bucket
        return bucket


class _Pacer:
    """Spaces grants by the time they are actually made (GCRA), after the reservation.

    A reservation is a time slot; when the event loop stalls (a busy CPU), several waiters
    whose slots passed wake together and would go out in one bunch, which a provider sees as
    a window over its limit. The pacer lets at most ``burst`` through at once and spaces the
    rest by ``1 / rate`` from the actual time, so any window of T seconds holds at most
    ``rate * T + burst`` grants however late the loop runs. Normally it waits not at all.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._theoretical_arrival = 0.0  # monotonic seconds

    async def pace(self, clock: Callable[[], float], *, rate_per_second: float, burst: int) -> None:
        interval = 1.0 / rate_per_second
        async with self._lock:
            while True:  # again after sleeping: an urgent grant may have taken the slot
                now = clock()
                earliest = max(self._theoretical_arrival, now) - (burst - 1) * interval
                if earliest <= now:
                    break
                await asyncio.sleep(earliest - now)
            self._theoretical_arrival = max(self._theoretical_arrival, now) + interval

    def reserve_urgent(
        self, now: float, *, rate_per_second: float, burst: int, max_wait: float
    ) -> float | None:
        """Take the next slot at once, without queueing on the lock behind ordinary callers
        (who re-check after their sleep); return the seconds to wait, or None (nothing
        taken) when that is over ``max_wait`` (emergencies alone can exceed the rate)."""
        interval = 1.0 / rate_per_second
        earliest = max(self._theoretical_arrival, now) - (burst - 1) * interval
        if earliest - now > max_wait:
            return None
        self._theoretical_arrival = max(self._theoretical_arrival, now) + interval
        return max(earliest - now, 0.0)


# KEYS[1]: the bucket hash. ARGV: rate_per_second, burst, max_wait_seconds, slack_seconds.
# Mirrors TokenBucket.reserve(n=1) on server time. Returns {granted, seconds}: granted=1 and
# the wait before use, or granted=0 (nothing taken) and the wait until a token is there.
# Numbers go back as strings because Redis truncates Lua numbers to integers.
_RESERVE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local slack = tonumber(ARGV[4])
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(saved[1])
local ts = tonumber(saved[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end
tokens = math.min(tokens, burst)
local left = tokens - 1
if left + 1e-9 >= 0 then
  left = math.max(left, 0)
end
local wait = 0
if left < 0 then
  wait = -left / rate
end
if wait > max_wait then
  return {0, string.format('%.17g', (1 - tokens) / rate)}
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', left),
  'ts', string.format('%.6f', ts))
redis.call('PEXPIRE', KEYS[1], math.ceil((wait + burst / rate + slack) * 1000))
return {1, string.format('%.17g', wait)}
"""


class RedisRateLimiter:
    """Token buckets in Redis, shared by every process that uses the same Redis and prefix.

    Each key is a hash ``<prefix><key>`` with ``tokens`` and ``ts`` (server time of the last
    refill), expiring once an idle bucket would be full again (a missing bucket is a full one).
    ``client`` is a ``redis.asyncio.Redis`` built by the composition root; ``prefix`` exists so
    tests can isolate their keys.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = RATE_LIMIT_KEY_PREFIX,
        max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
    ) -> None:
        self.max_wait_seconds = _check_max_wait(max_wait_seconds)
        self.prefix = prefix
        self._reserve = client.register_script(_RESERVE_LUA)

    async def acquire(
        self, key: str, *, rate_per_second: float, burst: int, urgent: bool = False
    ) -> None:
        """Return when one call may be made; raise RateLimitWaitTooLongError if too far off.

        ``urgent`` is accepted but waits its turn (see the module docstring). Raises
        SharedStateUnavailableError when Redis does not answer.
        """
        _check_limits(key, rate_per_second=rate_per_second, burst=burst)
        args = (repr(float(rate_per_second)), burst, repr(self.max_wait_seconds))
        try:
            granted, seconds = await self._reserve(
                keys=[self.prefix + key], args=[*args, REDIS_KEY_SLACK_SECONDS]
            )
        except RedisError as e:
            raise SharedStateUnavailableError() from e
        wait = float(seconds)
        if not int(granted):
            raise RateLimitWaitTooLongError(key=key, retry_after_seconds=wait)
        if wait > 0:
            await asyncio.sleep(wait)


# -- breaker state ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BreakerRecord:
    """A stored breaker snapshot (None if none yet), its version (0 if none) and the store's now."""

    snapshot: Mapping[str, object] | None
    version: int
    now: float

    def breaker(self, config: BreakerConfig) -> CircuitBreaker:
        """The breaker this record holds, or a fresh closed one (also for an unreadable one)."""
        if self.snapshot is None:
            return CircuitBreaker(config)
        try:
            return CircuitBreaker.from_dict(self.snapshot, config=config)
        except InvalidBreakerSnapshotError as e:
            log.warning("breaker.snapshot_invalid", error=str(e))
            return CircuitBreaker(config)


class BreakerStore(Protocol):
    """Versioned breaker snapshots per provider name, saved by compare-and-set."""

    async def load(self, name: str) -> BreakerRecord:
        """The stored snapshot and version of ``name``, with the store's clock reading."""
        ...

    async def save(
        self, name: str, snapshot: Mapping[str, object], *, expected_version: int
    ) -> bool:
        """Store ``snapshot`` if the version is still ``expected_version``; False if it moved."""
        ...


class InProcessBreakerStore:
    """Breaker snapshots in this process's memory, on ``time.monotonic``."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._records: dict[str, tuple[int, dict[str, object]]] = {}

    async def load(self, name: str) -> BreakerRecord:
        """The stored snapshot and version of ``name``, with the store's clock reading."""
        version, snapshot = self._records.get(name, (0, None))
        return BreakerRecord(
            snapshot=None if snapshot is None else dict(snapshot),
            version=version,
            now=self._clock(),
        )

    async def save(
        self, name: str, snapshot: Mapping[str, object], *, expected_version: int
    ) -> bool:
        """Store ``snapshot`` if the version is still ``expected_version``; False if it moved."""
        version, _ = self._records.get(name, (0, None))
        if version != expected_version:
            return False
        self._records[name] = (version + 1, dict(snapshot))
        return True


# KEYS[1]: the breaker hash. Returns {version, snapshot json or false, seconds, microseconds}.
_LOAD_LUA = """
local saved = redis.call('HMGET', KEYS[1], 'v', 's')
local t = redis.call('TIME')
return {tonumber(saved[1]) or 0, saved[2], t[1], t[2]}
"""

# KEYS[1]: the breaker hash. ARGV: expected version, snapshot json. Returns 1 if saved, else 0.
_SAVE_LUA = """
local v = tonumber(redis.call('HGET', KEYS[1], 'v')) or 0
if v ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'v', v + 1, 's', ARGV[2])
return 1
"""


class RedisBreakerStore:
    """Breaker snapshots in Redis hashes ``<prefix><name>`` (``v`` version, ``s`` JSON).

    Both operations are one Lua script each (EVALSHA), so a save is an atomic compare-and-set.
    The clock is Redis server ``TIME`` in seconds, read in the same round trip as the load.
    Keys do not expire: there is one per provider. Raises SharedStateUnavailableError when
    Redis does not answer.
    """

    def __init__(self, client: Redis, *, prefix: str = BREAKER_KEY_PREFIX) -> None:
        self.prefix = prefix
        self._load = client.register_script(_LOAD_LUA)
        self._save = client.register_script(_SAVE_LUA)

    async def load(self, name: str) -> BreakerRecord:
        """The stored snapshot and version of ``name``, with the Redis server's clock reading."""
        try:
            version, raw, seconds, micros = await self._load(keys=[self.prefix + name])
        except RedisError as e:
            raise SharedStateUnavailableError() from e
        snapshot: dict[str, object] | None = None
        if raw:
            try:
                decoded = json.loads(raw)
            except ValueError:
                decoded = None
            snapshot = decoded if isinstance(decoded, dict) else {}  # {} reads as invalid
        return BreakerRecord(
            snapshot=snapshot, version=int(version), now=int(seconds) + int(micros) / 1_000_000
        )

    async def save(
        self, name: str, snapshot: Mapping[str, object], *, expected_version: int
    ) -> bool:
        """Store ``snapshot`` if the version is still ``expected_version``; False if it moved."""
        payload = json.dumps(dict(snapshot), separators=(",", ":"))
        try:
            saved = await self._save(keys=[self.prefix + name], args=(expected_version, payload))
        except RedisError as e:
            raise SharedStateUnavailableError() from e
        return bool(int(saved))


async def update_breaker(
    store: BreakerStore,
    name: str,
    *,
    config: BreakerConfig,
    change: Callable[[CircuitBreaker, float], T],
    attempts: int = BREAKER_UPDATE_ATTEMPTS,
) -> T:
    """Apply ``change(breaker, now)`` to ``name``'s stored breaker and return what it returns.

    ``change`` is a pure call such as ``lambda b, now: b.allow(now)`` or
    ``lambda b, now: b.record_failure(now)``; ``now`` is the store's clock. The snapshot is
    saved only if it changed, by compare-and-set; on a conflict the change is re-applied to the
    fresh state. After ``attempts`` conflicts the last result is returned unsaved (logged):
    breaker bookkeeping is best effort and must never fail a send.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    result: T
    for _ in range(attempts):
        record = await store.load(name)
        breaker = record.breaker(config)
        before = breaker.to_dict()
        result = change(breaker, record.now)
        after = breaker.to_dict()
        if after == before:
            return result
        if await store.save(name, after, expected_version=record.version):
            return result
    log.warning("breaker.update_conflict", provider=name, attempts=attempts)
    return result
