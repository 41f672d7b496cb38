"""Dispatch: send a batch of one organization's items on one channel through its providers.

For each batch the router plans an order of providers (the organization's strategy, skipping
any whose circuit breaker is open). Items go to the first; those that fail transiently, or
whose provider refused our credentials, move on to the next provider in the plan at once, so
one provider being down costs a retry of nothing. A provider with a rate limit gets a token per
item first (shared through Redis when configured). What every provider failed is returned with
the last error, for the worker's retry policy.

Breakers count transient failures (5xx, timeouts, dropped connections) against a provider; a
success or a permanent refusal (the provider answered) counts for it; a 429 counts neither.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from guestcomms.channels.base import (
    CredentialsError,
    OutgoingItem,
    RateLimitedError,
    SendReceipt,
    SendResult,
    TransientProviderError,
)
from guestcomms.channels.urgency import is_urgent
from guestcomms.domain.breaker import BreakerConfig, CircuitBreaker
from guestcomms.domain.routing import Router
from guestcomms.engine.directory import ProviderDirectory, Route
from guestcomms.engine.metrics import Metrics
from guestcomms.engine.ratelimit import RateLimiter, RateLimitWaitTooLongError

log = structlog.get_logger("guestcomms.dispatch")


class NoProviderError(TransientProviderError):
    """No provider of this channel may be used right now (none configured, or all open)."""


@dataclass(frozen=True, slots=True)
class Dispatched:
    """The outcome of one item: the result and the provider that produced it (if any)."""

    result: SendResult
    provider: str | None
    kind: str | None = None  # the provider's kind ("outbox", "sendgrid"): the metrics' label


class Dispatcher:
    """Routes items to providers with failover, breakers and rate limits. One per worker."""

    def __init__(
        self,
        *,
        directory: ProviderDirectory,
        limiter: RateLimiter,
        router: Router | None = None,
        breaker_config: BreakerConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self.directory = directory
        self.metrics = metrics or Metrics()
        self._limiter = limiter
        self._router = router or Router()
        self._breaker_config = breaker_config or BreakerConfig()
        self.clock = clock
        self.breakers: dict[str, CircuitBreaker] = {}
        # route key -> (channel, provider kind): the labels of its breaker's metric
        self.route_labels: dict[str, tuple[str, str]] = {}
        self.metrics.watch(self)  # its breakers appear in the metrics

    def breaker(self, key: str) -> CircuitBreaker:
        """The breaker of the route with this key (created closed)."""
        if key not in self.breakers:
            self.breakers[key] = CircuitBreaker(self._breaker_config)
        return self.breakers[key]

    async def send(
        self, organization_id: uuid.UUID, channel: str, items: Sequence[OutgoingItem]
    ) -> list[Dispatched]:
        """One outcome per item, in order. Never raises for an item."""
        routes, strategy = await self.directory.routes(organization_id, channel)
        by_name = {r.name: r for r in routes}
        for r in routes:
            self.route_labels.setdefault(r.key, (channel, r.provider.name))
        breakers = {r.name: self.breaker(r.key) for r in routes}
        plan = self._router.plan(
            [r.choice for r in routes], strategy=strategy, breakers=breakers, now=self.clock()
        )
        outcomes: dict[int, Dispatched] = {}
        pending = list(range(len(items)))
        for name in plan:
            if not pending:
                break
            route = by_name[name]
            if not breakers[name].allow(self.clock()):
                continue
            results = await self._send_via(route, channel, [items[i] for i in pending])
            retry_elsewhere = []
            for index, result in zip(pending, results, strict=True):
                outcomes[index] = Dispatched(result, route.name, route.provider.name)
                if _try_next(result):
                    retry_elsewhere.append(index)
            await self._learn(route, results)
            pending = retry_elsewhere
        for index in pending:
            if index not in outcomes:
                outcomes[index] = Dispatched(
                    NoProviderError(f"no {channel} provider is available now"), None
                )
        return [outcomes[i] for i in range(len(items))]

    async def _send_via(
        self, route: Route, channel: str, items: Sequence[OutgoingItem]
    ) -> list[SendResult]:
        if route.rate_per_second is None:
            return await self._timed(route, channel, items)
        return list(
            await asyncio.gather(*(self._send_limited(route, channel, item) for item in items))
        )

    async def _timed(
        self, route: Route, channel: str, items: Sequence[OutgoingItem]
    ) -> list[SendResult]:
        """The provider's call, its duration observed once per item (the latency metric)."""
        started = time.perf_counter()
        results = await route.provider.send_batch(items)
        self.metrics.observe_send(
            channel=channel,
            provider=route.provider.name,
            seconds=time.perf_counter() - started,
            items=len(items),
        )
        return results

    async def _send_limited(self, route: Route, channel: str, item: OutgoingItem) -> SendResult:
        assert route.rate_per_second is not None  # noqa: S101 - checked by the caller
        try:
            await self._limiter.acquire(
                route.key,
                rate_per_second=route.rate_per_second,
                burst=route.burst,
                urgent=is_urgent(),  # an emergency skips the bulk batch's reservations
            )
        except RateLimitWaitTooLongError as e:
            return RateLimitedError(
                f"{route.name} is over its rate limit", retry_after_seconds=e.retry_after_seconds
            )
        [result] = await self._timed(route, channel, [item])
        return result

    async def _learn(self, route: Route, results: Sequence[SendResult]) -> None:
        breaker = self.breaker(route.key)
        now = self.clock()
        credentials: CredentialsError | None = None
        for result in results:
            if isinstance(result, CredentialsError):
                credentials = result
            if isinstance(result, RateLimitedError):
                breaker.release(now)
            elif isinstance(result, TransientProviderError):
                breaker.record_failure(now)
            else:
                breaker.record_success(now)
        if credentials is not None:
            await self.directory.credentials_failed(route, reason=str(credentials))


def _try_next(result: SendResult) -> bool:
    """Whether another provider should get the item now."""
    if isinstance(result, SendReceipt):
        return False
    return isinstance(result, TransientProviderError | CredentialsError)
