"""providers suppressions inbound inbox channels

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 15:57:06.424800
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "channel_routes",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("strategy", sa.String(length=30), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_channel_routes_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_routes")),
        sa.UniqueConstraint("organization_id", "channel", name="uq_channel_routes_org_channel"),
    )
    op.create_table(
        "inbound_events",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=50), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=30), nullable=False),
        sa.Column("delivery_id", sa.Uuid(), nullable=True),
        sa.Column("raw", sa.JSON(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_inbound_events_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_events")),
        sa.UniqueConstraint(
            "organization_id", "provider", "event_id", name="uq_inbound_events_org_provider_event"
        ),
    )
    op.create_table(
        "operational_events",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_operational_events_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operational_events")),
    )
    with op.batch_alter_table("operational_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_operational_events_org_id", ["organization_id", "id"], unique=False
        )

    op.create_table(
        "provider_accounts",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("credentials", sa.JSON(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("cost_per_message", sa.Float(), nullable=True),
        sa.Column("rate_per_second", sa.Float(), nullable=True),
        sa.Column("burst", sa.Integer(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_provider_accounts_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_accounts")),
        sa.UniqueConstraint("organization_id", "name", name="uq_provider_accounts_org_name"),
    )
    with op.batch_alter_table("provider_accounts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_provider_accounts_org_channel", ["organization_id", "channel"], unique=False
        )

    op.create_table(
        "suppressions",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=30), nullable=False),
        sa.Column("source", sa.String(length=50), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_suppressions_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
        sa.UniqueConstraint(
            "organization_id", "channel", "address", name="uq_suppressions_org_channel_address"
        ),
    )
    op.create_table(
        "inbox_items",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("contact_id", sa.Uuid(), nullable=False),
        sa.Column("delivery_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=True),
        sa.Column("requires_ack", sa.Boolean(), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_inbox_items_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_inbox_items_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_items")),
        sa.UniqueConstraint("delivery_id", name=op.f("uq_inbox_items_delivery_id")),
    )
    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_inbox_items_contact", ["organization_id", "contact_id", "id"], unique=False
        )

    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("webhook_url", sa.String(length=2000), nullable=True))
        batch_op.add_column(
            sa.Column(
                "push_subscriptions", sa.JSON(), nullable=False, server_default=sa.text("'[]'")
            )
        )

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deliveries_provider_message",
            ["organization_id", "provider_message_id"],
            unique=False,
        )

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("channels", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )

    with op.batch_alter_table("template_versions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("channel_content", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("template_versions", schema=None) as batch_op:
        batch_op.drop_column("channel_content")

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("channels")

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_provider_message")

    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_column("push_subscriptions")
        batch_op.drop_column("webhook_url")

    with op.batch_alter_table("inbox_items", schema=None) as batch_op:
        batch_op.drop_index("ix_inbox_items_contact")

    op.drop_table("inbox_items")
    op.drop_table("suppressions")
    with op.batch_alter_table("provider_accounts", schema=None) as batch_op:
        batch_op.drop_index("ix_provider_accounts_org_channel")

    op.drop_table("provider_accounts")
    with op.batch_alter_table("operational_events", schema=None) as batch_op:
        batch_op.drop_index("ix_operational_events_org_id")

    op.drop_table("operational_events")
    op.drop_table("inbound_events")
    op.drop_table("channel_routes")
