"""Analytics: hourly rollups per organization, channel and provider only, filled from the
existing rollups.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23 01:25:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_COUNTERS = [
    "sent",
    "delivered",
    "bounced_hard",
    "bounced_soft",
    "complained",
    "unsubscribed",
    "blocked",
    "failed",
    "opened",
    "opened_total",
    "opened_machine",
    "clicked",
    "clicked_total",
    "clicked_machine",
]
_TABLE = "analytics_channel_rollups"


def upgrade() -> None:
    op.create_table(
        _TABLE,
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("provider", sa.String(length=50), nullable=True),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in _COUNTERS),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{_TABLE}")),
    )
    op.create_index(
        "ix_analytics_channel_rollups_org_bucket",
        _TABLE,
        ["organization_id", "bucket", "channel", "provider", *_COUNTERS],
    )
    # the rows so far, summed over the other dimensions (ids as each database stores a Uuid)
    new_id = (
        "gen_random_uuid()"
        if op.get_bind().dialect.name == "postgresql"
        else "lower(hex(randomblob(16)))"
    )
    counters = ", ".join(_COUNTERS)
    sums = ", ".join(f"sum({name})" for name in _COUNTERS)
    op.execute(
        f"INSERT INTO {_TABLE} (id, created_at, organization_id, bucket, channel, provider, "  # noqa: S608 - constants only
        f"{counters}) SELECT {new_id}, min(created_at), organization_id, bucket, channel, "
        f"provider, {sums} FROM analytics_rollups "
        "GROUP BY organization_id, bucket, channel, provider"
    )


def downgrade() -> None:
    op.drop_index("ix_analytics_channel_rollups_org_bucket", table_name=_TABLE)
    op.drop_table(_TABLE)
