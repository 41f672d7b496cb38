"""Rate-limit math: a token bucket, and the parsing of a provider's ``Retry-After`` header.

The token bucket holds at most ``burst`` tokens and refills at ``rate_per_second``; a send
takes one. Over any window of ``T`` seconds it grants at most ``burst + rate_per_second * T``
tokens, which is the guarantee the rate-limit acceptance test checks.

Two ways to take tokens:

* ``try_take(now, n)`` takes them if they are there and otherwise says how long to wait
  (nothing is taken, the caller comes back later);
* ``reserve(now, n, max_wait_seconds=...)`` takes them at once, letting the bucket go into
  debt, and says how long the caller must wait before using them. Later callers queue behind
  the debt, so waiters are served first come, first served and each learns its exact wait in
  one step (the engine's limiters use this; the Redis script mirrors it).

Pure: time is passed in as ``now`` (seconds on a monotonic clock of the caller's choosing).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

TOKEN_EPSILON = 1e-9  # tokens; absorbs float rounding so a caller who waited exactly is served

_DELTA_SECONDS = re.compile(r"-?[0-9]{1,15}(?:\.[0-9]{1,9})?")


class TokenBucket:
    """A token bucket; starts full (``burst`` tokens) unless ``tokens`` is given.

    ``rate_per_second`` must be > 0 and ``burst`` >= 1, else ValueError. ``updated_at`` is the
    ``now`` of the last refill (None until first use). ``tokens`` may be negative after
    ``reserve`` (debt). A ``now`` earlier than ``updated_at`` (a clock step back) refills nothing.
    """

    __slots__ = ("burst", "rate_per_second", "tokens", "updated_at")

    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        *,
        tokens: float | None = None,
        updated_at: float | None = None,
    ) -> None:
        if not (rate_per_second > 0 and math.isfinite(rate_per_second)):
            raise ValueError("rate_per_second must be a positive number")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate_per_second = float(rate_per_second)
        self.burst = burst
        self.tokens = float(burst) if tokens is None else min(float(tokens), float(burst))
        self.updated_at = updated_at

    def __repr__(self) -> str:
        return (
            f"TokenBucket(rate_per_second={self.rate_per_second}, burst={self.burst}, "
            f"tokens={self.tokens}, updated_at={self.updated_at})"
        )

    def available(self, now: float) -> float:
        """Tokens in the bucket at ``now`` after refilling (negative while in debt)."""
        return self._refill(now)

    def wait_seconds(self, now: float, n: int = 1) -> float:
        """Seconds until ``n`` tokens will be there (0.0 if they are); takes nothing."""
        self._check(n)
        tokens = self._refill(now)
        if tokens + TOKEN_EPSILON >= n:
            return 0.0
        return (n - tokens) / self.rate_per_second

    def try_take(self, now: float, n: int = 1) -> float:
        """Take ``n`` tokens: 0.0 if taken, else the seconds until they will be there.

        Raises ValueError when ``n`` is over ``burst`` (it could never be served).
        """
        wait = self.wait_seconds(now, n)
        if wait == 0.0:
            self.tokens -= n
        return wait

    def reserve(
        self, now: float, n: int = 1, *, max_wait_seconds: float = math.inf
    ) -> float | None:
        """Take ``n`` tokens now, into debt if need be; return the seconds to wait before use.

        Returns None, taking nothing, when that wait would exceed ``max_wait_seconds``.
        Raises ValueError when ``n`` is over ``burst``.
        """
        self._check(n)
        tokens = self._refill(now) - n
        wait = 0.0 if tokens + TOKEN_EPSILON >= 0 else -tokens / self.rate_per_second
        if wait > max_wait_seconds:
            return None
        self.tokens = tokens
        return wait

    def _check(self, n: int) -> None:
        if n < 1 or n > self.burst:
            raise ValueError(f"can take 1 to {self.burst} tokens at a time, not {n}")

    def _refill(self, now: float) -> float:
        tokens = self.tokens
        if self.updated_at is not None and now > self.updated_at:
            elapsed = now - self.updated_at
            tokens = min(float(self.burst), tokens + elapsed * self.rate_per_second)
        if self.updated_at is None or now > self.updated_at:
            self.updated_at = now
        self.tokens = tokens
        return tokens


def parse_retry_after(
    value: str, *, now: datetime, max_seconds: float | None = None
) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or None if it is not one (RFC 9110 §10.2.3).

    Accepts delta-seconds (``"120"``; a fraction such as ``"1.5"`` is tolerated) and an HTTP-date
    in any of its three forms (IMF-fixdate, RFC 850, asctime; a date without a zone is GMT).
    ``now`` is the instant the response arrived (a naive value is taken as UTC). A negative
    delay or a date in the past gives 0.0; ``max_seconds``, when given, caps the result.
    Anything else (empty, words, a non-finite number, an impossible date) gives None.
    """
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        reference = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
        seconds = (when - reference).total_seconds()
    seconds = max(0.0, seconds)
    if max_seconds is not None:
        seconds = min(seconds, max_seconds)
    return seconds
