"""API shapes of ``GET /v1/analytics``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Figures(BaseModel):
    """Counts over the range; deliveries are counted once per figure."""

    sent: int
    delivered: int
    opened: int = Field(description="deliveries opened at least once by a person (unique)")
    opened_total: int = Field(description="every open by a person")
    opened_machine: int = Field(description="opens by machines (proxies, scanners), left out")
    clicked: int = Field(description="deliveries with at least one click by a person")
    clicked_total: int
    clicked_machine: int
    bounced: int
    bounced_hard: int
    bounced_soft: int
    complained: int
    unsubscribed: int
    blocked: int
    failed: int


class RateOut(BaseModel):
    """A proportion with its 95% Wilson confidence interval; ``value`` null with no trials."""

    value: float | None
    low: float
    high: float
    successes: int
    trials: int


class SeriesPoint(Figures):
    """One period of the time series."""

    start: datetime = Field(description="the period's start, in the query's time zone")


class LinkOut(BaseModel):
    """Clicks by people on one link of a message."""

    message_id: str
    link_index: int | None
    url: str | None
    clicked: int = Field(description="deliveries that clicked it (unique)")
    clicked_total: int


class AnalyticsOut(BaseModel):
    """Figures, rates, time series, links, score and recommendations of a scope."""

    scope: str
    id: str | None
    start: datetime = Field(description="the range's start, rounded down to the hour")
    end: datetime = Field(description="the range's end (excluded), rounded up to the hour")
    group_by: str
    tz: str
    figures: Figures
    rates: dict[str, RateOut]
    series: list[SeriesPoint]
    links: list[LinkOut] | None = Field(description="message and campaign scopes only")
    score: float | None = Field(
        description="0-100 against the organization's previous 90 days; 50 is as usual"
    )
    baseline_rates: dict[str, RateOut]
    recommendations: list[str]
