"""Analytics: hourly rollups per campaign, event and template version, filled from the
existing rollups.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23 03:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
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
_TABLE = "analytics_scope_rollups"
_SCOPES = ("campaign_id", "event_id", "template_version_id")


def upgrade() -> None:
    op.create_table(
        _TABLE,
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scope", sa.String(length=20), nullable=False),
        sa.Column("scope_id", sa.Uuid(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in _COUNTERS),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{_TABLE}")),
    )
    op.create_index(
        "ix_analytics_scope_rollups_scope",
        _TABLE,
        ["scope_id", "bucket", "organization_id", "scope", *_COUNTERS],
    )
    op.create_index("ix_analytics_scope_rollups_org_bucket", _TABLE, ["organization_id", "bucket"])
    # the rows so far, summed per scope (ids as each database stores a Uuid)
    new_id = (
        "gen_random_uuid()"
        if op.get_bind().dialect.name == "postgresql"
        else "lower(hex(randomblob(16)))"
    )
    counters = ", ".join(_COUNTERS)
    sums = ", ".join(f"sum({name})" for name in _COUNTERS)
    for scope in _SCOPES:
        op.execute(
            f"INSERT INTO {_TABLE} (id, created_at, organization_id, bucket, scope, scope_id, "  # noqa: S608 - constants only
            f"{counters}) SELECT {new_id}, min(created_at), organization_id, bucket, "
            f"'{scope}', {scope}, {sums} FROM analytics_rollups WHERE {scope} IS NOT NULL "
            f"GROUP BY organization_id, bucket, {scope}"
        )


def downgrade() -> None:
    op.drop_index("ix_analytics_scope_rollups_org_bucket", table_name=_TABLE)
    op.drop_index("ix_analytics_scope_rollups_scope", table_name=_TABLE)
    op.drop_table(_TABLE)
