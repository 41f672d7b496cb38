"""tracking events, the per-message tracking switch, campaign experiments and send-time
optimisation, and the arm and send-time confidence of each delivery

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 20:51:05.620184
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tracking_events",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("delivery_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("link_index", sa.SmallInteger(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("machine", sa.Boolean(), nullable=False),
        sa.Column("machine_reason", sa.String(length=30), nullable=True),
        sa.Column("user_agent", sa.String(length=300), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_tracking_events_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracking_events")),
    )
    with op.batch_alter_table("tracking_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tracking_events_delivery", ["organization_id", "delivery_id", "kind"], unique=False
        )
        batch_op.create_index(
            "ix_tracking_events_org_created", ["organization_id", "created_at"], unique=False
        )

    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("experiment", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("send_time", sa.JSON(), nullable=True))

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("experiment_arm", sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column("send_time_confidence", sa.Float(), nullable=True))

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("tracking", sa.Boolean(), server_default=sa.true(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("tracking")

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("send_time_confidence")
        batch_op.drop_column("experiment_arm")

    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_column("send_time")
        batch_op.drop_column("experiment")

    with op.batch_alter_table("tracking_events", schema=None) as batch_op:
        batch_op.drop_index("ix_tracking_events_org_created")
        batch_op.drop_index("ix_tracking_events_delivery")

    op.drop_table("tracking_events")
