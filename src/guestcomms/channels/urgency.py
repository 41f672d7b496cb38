"""Urgent sends go first: a context flag for emergency deliveries, provider slots that let
urgent waiters in ahead of the others, and a hold that pauses ordinary work while an
emergency is in flight.

A bulk batch queues hundreds of sends on a provider's connection slots (``max_concurrency``,
the SMTP pool) at once. An emergency that arrives meanwhile would wait for all of them in a
plain FIFO semaphore; with :class:`PrioritySlots` it takes the next slot that frees up. The
worker marks its emergency sends with :func:`sending_urgently`; the flag is a context
variable, so it reaches every task the send starts (``asyncio.gather`` copies the context)
without changing any provider's signature.

A process has one event loop, and a worker sending bulk keeps it busy: every step of an
emergency (claim, load, send) then waits behind hundreds of ready callbacks. While a
:class:`Hold` is held (the emergency lane holds its worker's from wake-up to hand-off, and in
``serve`` the API holds it while it accepts an emergency), ordinary work that reaches a pause
point (:meth:`Hold.pause`; a bulk send waiting for a provider slot pauses by itself) waits,
for at most ``URGENT_HOLD_SECONDS``, so a provider that hangs on the emergency cannot stop
the bulk for its whole timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterator
from contextvars import ContextVar

URGENT_HOLD_SECONDS = 0.25  # the longest ordinary work pauses for one emergency

_URGENT: ContextVar[bool] = ContextVar("guestcomms_urgent_send", default=False)


def is_urgent() -> bool:
    """Whether the current send is an emergency (inside :func:`sending_urgently`)."""
    return _URGENT.get()


@contextlib.contextmanager
def sending_urgently(urgent: bool = True) -> Iterator[None]:
    """Mark the sends started inside this block as urgent (or not, with ``False``)."""
    token = _URGENT.set(urgent)
    try:
        yield
    finally:
        _URGENT.reset(token)


class Hold:
    """Ordinary work pauses at its pause points while the hold is held (see the module)."""

    def __init__(self, *, max_pause_seconds: float = URGENT_HOLD_SECONDS) -> None:
        self._holders = 0
        self._calm = asyncio.Event()
        self._calm.set()
        self._max_pause = max_pause_seconds

    @property
    def held(self) -> bool:
        """Whether an emergency holds it now."""
        return self._holders > 0

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Hold it for the duration of the block (holders nest)."""
        self._holders += 1
        self._calm.clear()
        try:
            yield
        finally:
            self._holders -= 1
            if self._holders == 0:
                self._calm.set()

    async def pause(self) -> None:
        """Wait while it is held, at most ``max_pause_seconds``; at once when urgent."""
        if self._holders and not is_urgent():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._calm.wait(), timeout=self._max_pause)


_HOLD: ContextVar[Hold | None] = ContextVar("guestcomms_hold", default=None)


def use_hold(hold: Hold) -> None:
    """Make ``hold`` the one ordinary sends in this context (and tasks it starts) pause on."""
    _HOLD.set(hold)


def _held() -> bool:
    hold = _HOLD.get()
    return hold is not None and hold.held


async def pause_for_urgent() -> None:
    """Pause if this context's hold is held (see :class:`Hold`); no hold, no pause."""
    hold = _HOLD.get()
    if hold is not None:
        await hold.pause()


class PrioritySlots:
    """A semaphore of ``size`` slots whose urgent waiters are let in before the others
    (first come, first served within each kind). ``async with slots:`` takes the urgency
    from :func:`is_urgent`.

    A released slot is handed straight to the next waiter, so a free slot never coexists
    with a waiter, and a newcomer cannot overtake those already waiting of its kind.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._free = size
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> None:
        await self.acquire(urgent=is_urgent())

    async def __aexit__(self, *_: object) -> None:
        self.release()

    @property
    def waiting(self) -> int:
        """How many callers are waiting for a slot."""
        return len(self._urgent) + len(self._normal)

    async def acquire(self, *, urgent: bool = False) -> None:
        """Take a slot, waiting (behind urgent waiters only, if ``urgent``) when none is free.

        An ordinary caller pauses (once) while an emergency holds its context's hold: before
        it queues, or, when the hold was taken while it queued, by giving its slot back.
        """
        paused = False
        while True:
            if not urgent and not paused and _held():
                await pause_for_urgent()
                paused = True
            await self._take(urgent=urgent)
            if urgent or paused or not _held():
                return
            self.release()  # an emergency came while we queued: it may want this slot

    async def _take(self, *, urgent: bool) -> None:
        if self._free > 0:
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._urgent if urgent else self._normal
        queue.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(future)
            raise

    def release(self) -> None:
        """Give a slot back: to the first urgent waiter, else the first other one."""
        for queue in (self._urgent, self._normal):
            while queue:
                future = queue.popleft()
                if not future.done():
                    future.set_result(None)
                    return
        self._free += 1
