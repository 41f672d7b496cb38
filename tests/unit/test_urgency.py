"""Emergencies go first inside the process: provider slots, the hold on ordinary work, and the
in-process rate limiter (channels/urgency.py, engine/ratelimit.py)."""

from __future__ import annotations

import asyncio

import pytest

from guestcomms.channels.urgency import Hold, PrioritySlots, sending_urgently, use_hold
from guestcomms.engine.ratelimit import InProcessRateLimiter, RateLimitWaitTooLongError


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_urgent_waiters_get_the_next_free_slot() -> None:
    """With every slot taken and bulk callers queued, an urgent caller that queues last is
    let in first when a slot frees up; the others keep their order."""
    slots = PrioritySlots(1)
    order: list[str] = []
    await slots.acquire()

    async def take(name: str, *, urgent: bool) -> None:
        await slots.acquire(urgent=urgent)
        order.append(name)
        slots.release()

    waiters = [asyncio.create_task(take(f"bulk{i}", urgent=False)) for i in range(3)]
    await _settle()
    waiters.append(asyncio.create_task(take("urgent", urgent=True)))
    await _settle()
    slots.release()
    await asyncio.gather(*waiters)
    assert order == ["urgent", "bulk0", "bulk1", "bulk2"]
    assert slots.waiting == 0


async def test_a_cancelled_waiter_does_not_lose_a_slot() -> None:
    """A waiter cancelled while it queues leaves the slot count intact."""
    slots = PrioritySlots(1)
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    await _settle()
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    slots.release()
    await asyncio.wait_for(slots.acquire(), timeout=1)  # the one slot is free again


async def test_ordinary_sends_pause_while_an_emergency_holds() -> None:
    """While the hold is held, an ordinary caller waits before it takes a slot; an urgent
    caller does not; releasing the hold lets the ordinary one through."""
    hold = Hold(max_pause_seconds=5.0)
    use_hold(hold)
    slots = PrioritySlots(4)
    with hold.holding():
        ordinary = asyncio.create_task(slots.acquire())
        await _settle()
        assert not ordinary.done()
        with sending_urgently():
            await asyncio.wait_for(slots.acquire(urgent=True), timeout=1)
    await asyncio.wait_for(ordinary, timeout=1)


async def test_the_pause_is_bounded() -> None:
    """A hold that is never released stops ordinary work for at most its bound."""
    hold = Hold(max_pause_seconds=0.05)
    use_hold(hold)
    slots = PrioritySlots(1)
    with hold.holding():
        await asyncio.wait_for(slots.acquire(), timeout=2)


async def test_an_urgent_call_goes_ahead_of_reserved_bulk_calls() -> None:
    """Bulk callers have reserved the next tokens of a rate-limited provider; an urgent
    caller is granted before all but the first of them, and the grants stay spaced."""
    limiter = InProcessRateLimiter()
    granted: list[str] = []

    async def call(name: str, *, urgent: bool = False) -> None:
        await limiter.acquire("p", rate_per_second=50.0, burst=1, urgent=urgent)
        granted.append(name)

    bulk = [asyncio.create_task(call(f"bulk{i}")) for i in range(5)]
    await _settle()
    await call("urgent", urgent=True)
    await asyncio.gather(*bulk)
    assert granted.index("urgent") <= 1
    assert sorted(granted) == sorted(["urgent", *(f"bulk{i}" for i in range(5))])


async def test_urgent_calls_alone_keep_the_rate() -> None:
    """Urgent calls are spaced like any other and deferred beyond the longest wait."""
    limiter = InProcessRateLimiter(max_wait_seconds=0.05)
    await limiter.acquire("p", rate_per_second=10.0, burst=1, urgent=True)
    with pytest.raises(RateLimitWaitTooLongError):
        await limiter.acquire("p", rate_per_second=10.0, burst=1, urgent=True)
