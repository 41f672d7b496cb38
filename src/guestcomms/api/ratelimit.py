"""Per-API-key request rate limits, on the ``limits`` package.

Each key gets a moving window: its own ``rate_limit`` (requests per minute) or the server's
default (``Settings.api_rate_limit``, e.g. ``"600/minute"``). The window's counts live in this
process (``memory://``) or, when ``redis_url`` is set, in Redis, so every API process shares
one count per key. ``api.deps.get_caller`` calls :meth:`ApiRateLimiter.hit` once per
authenticated request and raises :class:`~guestcomms.errors.TooManyRequestsError` (429 with
``Retry-After``) when the key is over its limit.

Built by ``create_app``; the storage connects lazily, so building it does no I/O. When Redis
does not answer, requests are let through (and ``api.rate_limit_unavailable`` is logged): the
limit protects the service, and an outage of it should not take the API down.
"""

from __future__ import annotations

import math
import time
import uuid

import structlog
from limits import RateLimitItem, RateLimitItemPerMinute, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError

from guestcomms.errors import TooManyRequestsError

log = structlog.get_logger("guestcomms.api")

API_RATE_KEY_PREFIX = "guestcomms:api-rl"  # Redis keys: <prefix>:LIMITER/<key id>/...


class ApiRateLimiter:
    """Counts requests per API key in a moving window; see the module docstring."""

    def __init__(
        self, storage: Storage, *, default_limit: str, pool: ConnectionPool | None = None
    ) -> None:
        self._storage = storage
        self._pool = pool  # Redis connections, closed by ``close``
        self._limiter = MovingWindowRateLimiter(storage)
        self._default = parse(default_limit)

    @classmethod
    def build(
        cls, *, default_limit: str, redis_url: str | None, key_prefix: str = API_RATE_KEY_PREFIX
    ) -> ApiRateLimiter:
        """In-process counts, or Redis-shared ones when ``redis_url`` is set."""
        if not redis_url:
            return cls(MemoryStorage(), default_limit=default_limit)
        # our own pool, so ``close`` can disconnect it (limits has no close of its own)
        pool = ConnectionPool.from_url(redis_url)
        storage = RedisStorage(
            f"async+{redis_url}",
            implementation="redispy",
            key_prefix=key_prefix,
            connection_pool=pool,  # type: ignore[arg-type]
        )
        return cls(storage, default_limit=default_limit, pool=pool)

    def item_for(self, per_minute: int | None) -> RateLimitItem:
        """The limit of a key whose ``rate_limit`` is ``per_minute`` (``None``: the default)."""
        return self._default if per_minute is None else RateLimitItemPerMinute(per_minute)

    async def hit(self, key_id: uuid.UUID, *, per_minute: int | None) -> None:
        """Count one request of ``key_id``; ``TooManyRequestsError`` if it is over its limit."""
        item = self.item_for(per_minute)
        try:
            if await self._limiter.hit(item, str(key_id)):
                return
            stats = await self._limiter.get_window_stats(item, str(key_id))
        except (RedisError, OSError) as e:  # fail open: see the module docstring
            log.warning("api.rate_limit_unavailable", error=repr(e))
            return
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise TooManyRequestsError(
            f"this API key is limited to {item}; retry in {retry_after} s",
            retry_after_seconds=retry_after,
        )

    async def close(self) -> None:
        """Disconnect from Redis, if used (the app's lifespan calls this at shutdown)."""
        if self._pool is not None:
            await self._pool.disconnect()

    async def reset(self) -> None:
        """Forget every count (tests)."""
        await self._storage.reset()
