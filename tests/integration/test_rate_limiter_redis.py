"""Shared rate limits and breaker state on a real Redis, and the in-process limiter in real time.

Skips when no Redis answers on 127.0.0.1:6379, unless ``GUESTCOMMS_REQUIRE_SERVICES=1``, where
its absence is a failure. Each test uses its own key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from guestcomms.domain.breaker import BreakerConfig, BreakerState
from guestcomms.engine.ratelimit import (
    InProcessRateLimiter,
    RateLimiter,
    RateLimitWaitTooLongError,
    RedisBreakerStore,
    RedisRateLimiter,
    SharedStateUnavailableError,
    update_breaker,
)

REDIS_HOST = os.environ.get("GUESTCOMMS_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("GUESTCOMMS_TEST_REDIS_PORT", "6379"))
REQUIRE_SERVICES = os.environ.get("GUESTCOMMS_REQUIRE_SERVICES") == "1"

RATE_PER_SECOND = 50.0
BURST = 5
RUN_SECONDS = 2.0  # how long the callers keep asking for tokens
TASKS_PER_LIMITER = 5  # concurrent callers per limiter (per "process")
MAX_WAIT_SECONDS = 5.0  # well above the queue the callers build (10 callers / 50 per s)

# rates per second and wait bounds in real time: another worker's load would skew them
pytestmark = pytest.mark.alone


def _redis_up() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=1):
            return True
    except OSError:
        return False


def max_in_window(times: Sequence[float], *, window_seconds: float) -> int:
    """The most timestamps that fall in any half-open window [t, t + window_seconds)."""
    ordered = sorted(times)
    best = 0
    start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window_seconds:
            start += 1
        best = max(best, end - start + 1)
    return best


def new_client() -> Redis:
    """A fresh client, as a separate worker process would have."""
    return Redis(host=REDIS_HOST, port=REDIS_PORT)


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix unique to this test; its keys are deleted afterwards."""
    if not _redis_up():
        if REQUIRE_SERVICES:
            pytest.fail(f"Redis is required but not reachable at {REDIS_HOST}:{REDIS_PORT}")
        pytest.skip(f"no Redis at {REDIS_HOST}:{REDIS_PORT}")
    value = f"guestcomms:test:{uuid.uuid4().hex}:"
    yield value
    client = new_client()
    try:
        keys = [key async for key in client.scan_iter(match=f"{value}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def hammer(limiters: Sequence[RateLimiter], *, key: str) -> list[float]:
    """Callers on every limiter acquire tokens for RUN_SECONDS; returns the grant times."""
    grants: list[float] = []
    deadline = time.monotonic() + RUN_SECONDS

    async def caller(limiter: RateLimiter) -> None:
        while time.monotonic() < deadline:
            await limiter.acquire(key, rate_per_second=RATE_PER_SECOND, burst=BURST)
            grants.append(time.monotonic())

    async with asyncio.TaskGroup() as group:
        for limiter in limiters:
            for _ in range(TASKS_PER_LIMITER):
                group.create_task(caller(limiter))
    return grants


def assert_rate_kept(grants: Sequence[float]) -> None:
    """No 1-s window saw more than rate + burst grants, and the rate was actually reached."""
    assert max_in_window(grants, window_seconds=1.0) <= RATE_PER_SECOND + BURST
    assert len(grants) >= RATE_PER_SECOND * RUN_SECONDS * 0.8


async def test_two_redis_limiters_share_one_rate(prefix: str) -> None:
    """Two clients (two processes) together never exceed 50/s + burst 5 in any 1-s window."""
    clients = [new_client(), new_client()]
    try:
        limiters = [
            RedisRateLimiter(c, prefix=prefix, max_wait_seconds=MAX_WAIT_SECONDS) for c in clients
        ]
        grants = await hammer(limiters, key="email-primary")
    finally:
        for c in clients:
            await c.aclose()
    assert_rate_kept(grants)


async def test_in_process_limiter_keeps_the_rate() -> None:
    """Concurrent callers on the in-process limiter never exceed 50/s + burst 5 per 1-s window."""
    limiter = InProcessRateLimiter(max_wait_seconds=MAX_WAIT_SECONDS)
    grants = await hammer([limiter, limiter], key="email-primary")
    assert_rate_kept(grants)


async def test_redis_limiter_refuses_a_wait_over_the_max(prefix: str) -> None:
    """With the shared bucket empty, a second acquire raises at once with a retry hint."""
    client = new_client()
    try:
        limiter = RedisRateLimiter(client, prefix=prefix, max_wait_seconds=0.5)
        await limiter.acquire("slow", rate_per_second=0.1, burst=1)
        started = time.monotonic()
        with pytest.raises(RateLimitWaitTooLongError) as caught:
            await limiter.acquire("slow", rate_per_second=0.1, burst=1)
        assert time.monotonic() - started < 0.5
        assert caught.value.retry_after_seconds > 9.0
        assert await client.ttl(f"{prefix}slow") > 0  # idle buckets expire
    finally:
        await client.aclose()


async def test_redis_breaker_store_is_shared_between_clients(prefix: str) -> None:
    """A breaker opened through one client is open for another; cool-down on Redis time."""
    config = BreakerConfig(failure_threshold=2, cooldown_seconds=0.2)
    first, second = new_client(), new_client()
    try:
        a = RedisBreakerStore(first, prefix=prefix)
        b = RedisBreakerStore(second, prefix=prefix)
        for store in (a, b):
            await update_breaker(
                store, "ses", config=config, change=lambda br, t: br.record_failure(t)
            )
        record = await b.load("ses")
        assert record.breaker(config).state(record.now) is BreakerState.OPEN
        assert not await update_breaker(a, "ses", config=config, change=lambda br, t: br.allow(t))
        await asyncio.sleep(0.25)
        assert await update_breaker(a, "ses", config=config, change=lambda br, t: br.allow(t))
        assert not await update_breaker(b, "ses", config=config, change=lambda br, t: br.allow(t))
        await update_breaker(b, "ses", config=config, change=lambda br, t: br.record_success(t))
        record = await a.load("ses")
        assert record.breaker(config).state(record.now) is BreakerState.CLOSED
        assert not await a.save("ses", {}, expected_version=record.version - 1)
    finally:
        await first.aclose()
        await second.aclose()


async def test_unreachable_redis_raises_a_typed_error() -> None:
    """A Redis that does not answer surfaces as SharedStateUnavailableError."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but not listening: connections are refused
        client = Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))
        try:
            limiter = RedisRateLimiter(client)
            with pytest.raises(SharedStateUnavailableError):
                await limiter.acquire("x", rate_per_second=1.0, burst=1)
        finally:
            await client.aclose()
