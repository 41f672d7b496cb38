"""Analytics: hourly rollups of delivery and tracking events, per-link clicks, the watermark.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 20:57:21.964418
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "analytics_link_rollups",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=True),
        sa.Column("link_index", sa.SmallInteger(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("clicked", sa.Integer(), nullable=False),
        sa.Column("clicked_total", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analytics_link_rollups")),
    )
    with op.batch_alter_table("analytics_link_rollups", schema=None) as batch_op:
        batch_op.create_index(
            "ix_analytics_link_rollups_org_message",
            ["organization_id", "message_id", "bucket"],
            unique=False,
        )

    op.create_table(
        "analytics_rollups",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=True),
        sa.Column("event_id", sa.Uuid(), nullable=True),
        sa.Column("template_version_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("provider", sa.String(length=50), nullable=True),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("bounced_hard", sa.Integer(), nullable=False),
        sa.Column("bounced_soft", sa.Integer(), nullable=False),
        sa.Column("complained", sa.Integer(), nullable=False),
        sa.Column("unsubscribed", sa.Integer(), nullable=False),
        sa.Column("blocked", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("opened", sa.Integer(), nullable=False),
        sa.Column("opened_total", sa.Integer(), nullable=False),
        sa.Column("opened_machine", sa.Integer(), nullable=False),
        sa.Column("clicked", sa.Integer(), nullable=False),
        sa.Column("clicked_total", sa.Integer(), nullable=False),
        sa.Column("clicked_machine", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analytics_rollups")),
    )
    with op.batch_alter_table("analytics_rollups", schema=None) as batch_op:
        batch_op.create_index(
            "ix_analytics_rollups_org_bucket", ["organization_id", "bucket"], unique=False
        )

    op.create_table(
        "analytics_watermarks",
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analytics_watermarks")),
        sa.UniqueConstraint("source", name=op.f("uq_analytics_watermarks_source")),
    )


def downgrade() -> None:
    op.drop_table("analytics_watermarks")
    with op.batch_alter_table("analytics_rollups", schema=None) as batch_op:
        batch_op.drop_index("ix_analytics_rollups_org_bucket")

    op.drop_table("analytics_rollups")
    with op.batch_alter_table("analytics_link_rollups", schema=None) as batch_op:
        batch_op.drop_index("ix_analytics_link_rollups_org_message")

    op.drop_table("analytics_link_rollups")
