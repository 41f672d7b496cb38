"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import DateTime, Uuid, bindparam, func, select, text
from sqlalchemy.engine import Connection

from guestcomms.db import migrate
from guestcomms.db.engine import create_engine
from guestcomms.db.migrate import alembic_config
from guestcomms.db.models import Base
from guestcomms.messages.models import Delivery, DeliveryEvent, Message


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    """Autogenerate finds nothing to change after `db upgrade`: no model lacks a migration."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(_diff)
    finally:
        await engine.dispose()
    assert diff == []


_ROWS_0003 = [
    "INSERT INTO organizations (id, name, created_at) VALUES (:o, 'Ana & Ben', :now)",
    "INSERT INTO contacts (id, organization_id, attributes, tags, push_subscriptions, "
    "updated_at, created_at) VALUES (:c, :o, '{}', '[]', '[]', :now, :now)",
    "INSERT INTO templates (id, organization_id, name, channel, latest_version, created_at) "
    "VALUES (:t, :o, 'invite', 'email', 1, :now)",
    "INSERT INTO template_versions (id, organization_id, template_id, version, variables, "
    "channel_content, created_at) VALUES (:v, :o, :t, 1, '[]', '{}', :now)",
    "INSERT INTO messages (id, organization_id, template_id, template_version_id, channel, "
    "channels, priority, send_at, status, variables, recipient_count, created_at) "
    "VALUES (:m, :o, :t, :v, 'email', '[]', 2, :now, 'accepted', '{}', 1, :now)",
    "INSERT INTO deliveries (id, organization_id, message_id, contact_id, channel, status, "
    "priority, send_at, attempts, idempotency_key, template_version_id, updated_at, created_at) "
    "VALUES (:d, :o, :m, :c, 'email', 'sent', 2, :now, 1, 'dlv_k', :v, :now, :now)",
    "INSERT INTO delivery_events (id, organization_id, delivery_id, type, created_at) "
    "VALUES (:e, :o, :d, 'sent', :now)",
]


async def test_upgrading_keeps_every_delivery_and_event(database_url: str) -> None:
    """Upgrading a database that holds history from 0003 keeps it all. SQLite rebuilds tables
    to change constraints; with foreign keys enforced, rebuilding `messages` would cascade
    into deleting every delivery (it did, before the migration environment switched
    enforcement off while migrating)."""
    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0003")
    ids = {name: uuid.uuid4() for name in "octvmde"}
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            params = {**ids, "now": datetime(2026, 1, 1, tzinfo=UTC)}
            uuid_type = Uuid()
            for statement in _ROWS_0003:
                bound = text(statement).bindparams(
                    *(bindparam(name, type_=uuid_type) for name in ids if f":{name}" in statement),
                    bindparam("now", type_=DateTime(timezone=True)),
                )
                await connection.execute(
                    bound, {k: v for k, v in params.items() if f":{k}" in statement}
                )
        await migrate.upgrade_async(database_url)
        async with engine.connect() as connection:
            counts = [
                (await connection.execute(select(func.count()).select_from(table))).scalar_one()
                for table in (Message.__table__, Delivery.__table__, DeliveryEvent.__table__)
            ]
    finally:
        await engine.dispose()
    assert counts == [1, 1, 1]
