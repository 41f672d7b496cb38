"""Analytics: covering indexes on the rollups, one per scope column, so a report reads its own
rows from an index alone.

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
_SCOPES = {
    "ix_analytics_rollups_message": "message_id",
    "ix_analytics_rollups_campaign": "campaign_id",
    "ix_analytics_rollups_event": "event_id",
    "ix_analytics_rollups_template_version": "template_version_id",
}
_ORG = "ix_analytics_rollups_org_bucket"
_LINK_VALUES = ["link_index", "url", "clicked", "clicked_total"]
_LINKS_ORG = "ix_analytics_link_rollups_org_message"
_LINKS_CAMPAIGN = "ix_analytics_link_rollups_campaign"


def upgrade() -> None:
    op.drop_index(_ORG, table_name="analytics_rollups")
    op.create_index(
        _ORG, "analytics_rollups", ["organization_id", "bucket", "channel", "provider", *_COUNTERS]
    )
    for name, column in _SCOPES.items():
        op.create_index(
            name, "analytics_rollups", [column, "bucket", "organization_id", *_COUNTERS]
        )
    op.drop_index(_LINKS_ORG, table_name="analytics_link_rollups")
    op.create_index(
        _LINKS_ORG,
        "analytics_link_rollups",
        ["organization_id", "message_id", "bucket", *_LINK_VALUES],
    )
    op.create_index(
        _LINKS_CAMPAIGN,
        "analytics_link_rollups",
        ["campaign_id", "bucket", "organization_id", "message_id", *_LINK_VALUES],
    )


def downgrade() -> None:
    op.drop_index(_LINKS_CAMPAIGN, table_name="analytics_link_rollups")
    op.drop_index(_LINKS_ORG, table_name="analytics_link_rollups")
    op.create_index(
        _LINKS_ORG, "analytics_link_rollups", ["organization_id", "message_id", "bucket"]
    )
    for name in _SCOPES:
        op.drop_index(name, table_name="analytics_rollups")
    op.drop_index(_ORG, table_name="analytics_rollups")
    op.create_index(_ORG, "analytics_rollups", ["organization_id", "bucket"])
