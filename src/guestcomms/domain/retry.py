"""Retry policy: exponential backoff with full jitter, honouring a provider's Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What to do after a failed attempt: retry after ``delay_seconds``, or give up."""

    retry: bool
    delay_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Decides whether and when a failed delivery is tried again.

    ``attempt`` counts the attempts made so far (1 after the first). The delay is drawn
    uniformly from ``[0, min(max_delay, base * 2**(attempt-1))]`` (full jitter, so a burst of
    failures does not come back as a burst), and never less than a provider's Retry-After.
    """

    max_attempts: int = 8
    base_delay_seconds: float = 2.0
    max_delay_seconds: float = 3600.0

    def decide(
        self,
        attempt: int,
        *,
        transient: bool,
        retry_after_seconds: float | None = None,
        rng: random.Random | None = None,
    ) -> RetryDecision:
        """Return the decision for a delivery that failed on attempt number ``attempt``."""
        if not transient or attempt >= self.max_attempts:
            return RetryDecision(retry=False)
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (attempt - 1))
        delay = (rng or random).uniform(0.0, ceiling)
        if retry_after_seconds is not None:
            delay = max(delay, retry_after_seconds)
        return RetryDecision(retry=True, delay_seconds=delay)
