"""encryption at rest: data keys, contact address hashes, suppressions unique by hash

Personal text columns become TEXT (a ciphertext is longer than the plaintext it replaces).
Contacts get ``email_hash`` and ``phone_hash``, and suppressions look up by ``address_hash``
alone: both are computed here for the rows already stored, keyed from the ``secret_key`` the
upgrade was given (``migrate.upgrade(..., secret_key=...)``; the development one otherwise).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 20:23:58.733460
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from guestcomms.compliance.hashing import address_hash, hash_key_from_secret
from guestcomms.config import DEV_SECRET_KEY

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# (table, column, its old length, nullable) of the columns that may now hold ciphertext
_WIDENED = (
    ("contacts", "email", 320, True),
    ("contacts", "phone", 20, True),
    ("contacts", "first_name", 200, True),
    ("contacts", "last_name", 200, True),
    ("inbox_items", "title", 300, False),
    ("outbox_messages", "recipient", 320, False),
    ("suppressions", "address", 320, False),
)


def _hash_key() -> bytes:
    return hash_key_from_secret(context.config.attributes.get("secret_key") or DEV_SECRET_KEY)


def _backfill_hashes() -> None:
    bind = op.get_bind()
    key = _hash_key()
    contacts = bind.execute(sa.text("SELECT id, email, phone FROM contacts")).all()
    updates = [
        {
            "id": row.id,
            "email_hash": address_hash(key, "email", row.email) if row.email else None,
            "phone_hash": address_hash(key, "phone", row.phone) if row.phone else None,
        }
        for row in contacts
    ]
    if updates:
        bind.execute(
            sa.text(
                "UPDATE contacts SET email_hash = :email_hash, phone_hash = :phone_hash "
                "WHERE id = :id"
            ),
            updates,
        )
    rows = bind.execute(
        sa.text(
            "SELECT id, organization_id, channel, address, address_hash FROM suppressions "
            "ORDER BY id"
        )
    ).all()
    seen: set[tuple[object, str, str]] = set()
    hashed, duplicates = [], []
    for row in rows:
        digest = row.address_hash or address_hash(key, row.channel, row.address)
        # an erased contact's hashed row and a later plain one for the same address: keep
        # the oldest, as a look-up by hash already did
        if (row.organization_id, row.channel, digest) in seen:
            duplicates.append({"id": row.id})
            continue
        seen.add((row.organization_id, row.channel, digest))
        if row.address.startswith("erased:"):
            hashed.append({"id": row.id, "digest": digest, "address": "erased"})
        elif row.address_hash != digest:
            hashed.append({"id": row.id, "digest": digest, "address": row.address})
    if duplicates:
        bind.execute(sa.text("DELETE FROM suppressions WHERE id = :id"), duplicates)
    if hashed:
        bind.execute(
            sa.text(
                "UPDATE suppressions SET address_hash = :digest, address = :address WHERE id = :id"
            ),
            hashed,
        )


def upgrade() -> None:
    op.create_table(
        "data_keys",
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("wrapped", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_keys")),
        sa.UniqueConstraint("key_id", name=op.f("uq_data_keys_key_id")),
    )
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("phone_hash", sa.String(length=64), nullable=True))
    _backfill_hashes()
    for table, column, length, nullable in _WIDENED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                column,
                existing_type=sa.String(length=length),
                type_=sa.Text(),
                existing_nullable=nullable,
            )
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_constraint("uq_contacts_org_email", type_="unique")
        batch_op.create_index(
            "ix_contacts_org_phone_hash", ["organization_id", "phone_hash"], unique=False
        )
        batch_op.create_unique_constraint(
            "uq_contacts_org_email_hash", ["organization_id", "email_hash"]
        )
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.alter_column("address_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_index("ix_suppressions_address_hash")
        batch_op.drop_constraint("uq_suppressions_org_channel_address", type_="unique")
        batch_op.create_unique_constraint(
            "uq_suppressions_org_channel_address_hash",
            ["organization_id", "channel", "address_hash"],
        )


def downgrade() -> None:
    # ciphertexts do not fit the old columns: downgrade only a database that never encrypted
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.drop_constraint("uq_suppressions_org_channel_address_hash", type_="unique")
        batch_op.create_unique_constraint(
            "uq_suppressions_org_channel_address", ["organization_id", "channel", "address"]
        )
        batch_op.create_index(
            "ix_suppressions_address_hash",
            ["organization_id", "channel", "address_hash"],
            unique=False,
        )
        batch_op.alter_column("address_hash", existing_type=sa.String(length=64), nullable=True)
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_constraint("uq_contacts_org_email_hash", type_="unique")
        batch_op.drop_index("ix_contacts_org_phone_hash")
        batch_op.create_unique_constraint("uq_contacts_org_email", ["organization_id", "email"])
    for table, column, length, nullable in _WIDENED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                column,
                existing_type=sa.Text(),
                type_=sa.String(length=length),
                existing_nullable=nullable,
            )
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_column("phone_hash")
        batch_op.drop_column("email_hash")
    op.drop_table("data_keys")
