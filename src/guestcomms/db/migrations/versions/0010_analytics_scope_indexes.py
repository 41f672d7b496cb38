"""Analytics: an index on the rollups per scope column, so a scoped report reads its own rows.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 00:18:04.225465
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_ROLLUP_INDEXES = {
    "ix_analytics_rollups_message": "message_id",
    "ix_analytics_rollups_campaign": "campaign_id",
    "ix_analytics_rollups_event": "event_id",
    "ix_analytics_rollups_template_version": "template_version_id",
}


def upgrade() -> None:
    op.create_index(
        "ix_analytics_link_rollups_campaign", "analytics_link_rollups", ["campaign_id", "bucket"]
    )
    for name, column in _ROLLUP_INDEXES.items():
        op.create_index(name, "analytics_rollups", [column, "bucket"])


def downgrade() -> None:
    for name in _ROLLUP_INDEXES:
        op.drop_index(name, table_name="analytics_rollups")
    op.drop_index("ix_analytics_link_rollups_campaign", table_name="analytics_link_rollups")
