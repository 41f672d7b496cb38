"""The rollup tables: hourly counters per organization and dimensions, and their watermarks."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from guestcomms.analytics.figures import COUNTER_NAMES
from guestcomms.db.base import Base

LINK_COLUMNS = ("link_index", "url", "clicked", "clicked_total")
# index name suffix -> the scope column it leads with
SCOPE_INDEXES = {
    "message": "message_id",
    "campaign": "campaign_id",
    "event": "event_id",
    "template_version": "template_version_id",
}


class RollupCounters:
    """The counters of a rollup row (``analytics.figures.Counters``), shared by the tables.

    Each counter but the ``*_total`` and machine ones counts deliveries, each once, in the hour
    of its first event of that kind (its first ``sent``, its first human open, ...)."""

    sent: Mapped[int] = mapped_column(default=0)
    delivered: Mapped[int] = mapped_column(default=0)
    bounced_hard: Mapped[int] = mapped_column(default=0)
    bounced_soft: Mapped[int] = mapped_column(default=0)
    complained: Mapped[int] = mapped_column(default=0)
    unsubscribed: Mapped[int] = mapped_column(default=0)
    blocked: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    opened: Mapped[int] = mapped_column(default=0)  # unique human opens
    opened_total: Mapped[int] = mapped_column(default=0)  # every human open
    opened_machine: Mapped[int] = mapped_column(default=0)  # every machine open
    clicked: Mapped[int] = mapped_column(default=0)  # unique human clicks
    clicked_total: Mapped[int] = mapped_column(default=0)
    clicked_machine: Mapped[int] = mapped_column(default=0)


class AnalyticsRollup(RollupCounters, Base):
    """Counters of one UTC hour (``bucket``) for one message x template version x channel x
    provider, kept by the rollup job (one row per key and hour; queries sum a key's rows all
    the same, as earlier versions appended several)."""

    __tablename__ = "analytics_rollups"
    # one index per scope a query filters on, led by it, so a campaign's report reads its
    # own rows rather than every row of the organization in the range; each holds the
    # counters too, so a report reads the index alone (on SQLite that halved the sum's time).
    # Rollup rows are few (one per key and hour), so the copies cost little.
    __table_args__ = (
        Index(
            "ix_analytics_rollups_org_bucket",
            "organization_id",
            "bucket",
            "channel",
            "provider",
            *COUNTER_NAMES,
        ),
        *(
            Index(
                f"ix_analytics_rollups_{name}",
                column,
                "bucket",
                "organization_id",
                *COUNTER_NAMES,
            )
            for name, column in SCOPE_INDEXES.items()
        ),
    )

    # no foreign keys: counters outlive the rows they count (an erased guest, a deleted message)
    organization_id: Mapped[uuid.UUID]
    bucket: Mapped[datetime]  # the UTC hour the counted events happened in
    message_id: Mapped[uuid.UUID]
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    event_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    template_version_id: Mapped[uuid.UUID]
    channel: Mapped[str] = mapped_column(String(20))
    provider: Mapped[str | None] = mapped_column(String(50), default=None)


class AnalyticsChannelRollup(RollupCounters, Base):
    """The same counters per organization x channel x provider and UTC hour only: what the
    organization, channel and provider scopes (and the baseline) read. An organization that
    sends many messages an hour has that many rows an hour in ``analytics_rollups``; here it
    has a handful. Kept by the rollup job beside the other, in the same transaction."""

    __tablename__ = "analytics_channel_rollups"
    __table_args__ = (
        Index(
            "ix_analytics_channel_rollups_org_bucket",
            "organization_id",
            "bucket",
            "channel",
            "provider",
            *COUNTER_NAMES,
        ),
    )

    organization_id: Mapped[uuid.UUID]
    bucket: Mapped[datetime]
    channel: Mapped[str] = mapped_column(String(20))
    provider: Mapped[str | None] = mapped_column(String(50), default=None)


class AnalyticsScopeRollup(RollupCounters, Base):
    """The same counters per campaign, event or template version and UTC hour: what those
    scopes read. A campaign of many messages (or an event of many campaigns, a template
    version sent in many messages) has one row an hour here, where ``analytics_rollups``
    has one per message, channel and provider. ``scope`` names the dimension
    (``campaign_id``, ``event_id``, ``template_version_id``), ``scope_id`` its value."""

    __tablename__ = "analytics_scope_rollups"
    __table_args__ = (
        # a report's read, covering (as the others)
        Index(
            "ix_analytics_scope_rollups_scope",
            "scope_id",
            "bucket",
            "organization_id",
            "scope",
            *COUNTER_NAMES,
        ),
        # the rollup job's read of the rows it adds to
        Index("ix_analytics_scope_rollups_org_bucket", "organization_id", "bucket"),
    )

    organization_id: Mapped[uuid.UUID]
    bucket: Mapped[datetime]
    scope: Mapped[str] = mapped_column(String(20))
    scope_id: Mapped[uuid.UUID]


class AnalyticsLinkRollup(Base):
    """Human clicks on one link of one message in one UTC hour (appended like the above)."""

    __tablename__ = "analytics_link_rollups"
    # covering, as the rollups' (the message and campaign scopes' per-link clicks)
    __table_args__ = (
        Index(
            "ix_analytics_link_rollups_org_message",
            "organization_id",
            "message_id",
            "bucket",
            *LINK_COLUMNS,
        ),
        Index(
            "ix_analytics_link_rollups_campaign",
            "campaign_id",
            "bucket",
            "organization_id",
            "message_id",
            *LINK_COLUMNS,
        ),
    )

    organization_id: Mapped[uuid.UUID]
    bucket: Mapped[datetime]
    message_id: Mapped[uuid.UUID]
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    link_index: Mapped[int | None] = mapped_column(SmallInteger, default=None)
    url: Mapped[str | None] = mapped_column(Text, default=None)
    clicked: Mapped[int] = mapped_column(default=0)  # deliveries that clicked it (unique)
    clicked_total: Mapped[int] = mapped_column(default=0)


class AnalyticsWatermark(Base):
    """How far the rollup job has read one raw table: every row with ``id < position`` is
    rolled up, every later one is read raw by queries (ids are UUIDv7: time-ordered)."""

    __tablename__ = "analytics_watermarks"

    source: Mapped[str] = mapped_column(String(40), unique=True)
    position: Mapped[uuid.UUID]
