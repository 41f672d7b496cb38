"""Helpers for tests: settings, an API client running the app's lifespan, and set-up calls."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guestcomms.app import create_app
from guestcomms.config import Environment, Settings
from guestcomms.contacts.models import Contact
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.domain.clock import utc_now
from guestcomms.domain.ids import new_id
from guestcomms.messages.models import Delivery, Message
from guestcomms.organizations.models import Organization
from guestcomms.organizations.repository import OrganizationRepository
from guestcomms.organizations.service import issue_key
from guestcomms.templates.models import Template, TemplateVersion


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """Test settings on ``database_url``: fast polling, short leases, quiet logs."""
    values: dict[str, Any] = {
        "environment": Environment.TEST,
        "database_url": database_url,
        "poll_interval_seconds": 0.05,
        "lease_seconds": 30.0,
        "log_level": "WARNING",
        "retry_base_seconds": 0.01,
        "retry_max_seconds": 0.05,
        # tests run at any hour: quiet hours only where a test sets them
        "quiet_hours": "off",
        # tests make hundreds of requests with one key; test_api_keys.py checks the limit
        "api_rate_limit": "100000/minute",
    }
    values.update(overrides)
    return Settings(**values)


async def create_key(database_url: str, org: str, *, scopes: tuple[str, ...] = ("admin",)) -> str:
    """Issue an API key for ``org`` directly in the database; return its plaintext."""
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            issued = await issue_key(
                OrganizationRepository(session), organization_name=org, scopes=scopes
            )
        return issued.plaintext
    finally:
        await engine.dispose()


@dataclass
class Api:
    """An httpx client bound to one running app."""

    app: FastAPI
    client: httpx.AsyncClient

    def as_key(self, key: str) -> httpx.AsyncClient:
        """A client sending ``key`` as its bearer token."""
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://test",
            headers={"Authorization": f"Bearer {key}"},
        )


@contextlib.asynccontextmanager
async def running_app(settings: Settings, *, embedded_worker: bool = False) -> AsyncIterator[Api]:
    """The app with its lifespan running (and its worker, if asked), and a plain client."""
    app = create_app(settings, embedded_worker=embedded_worker)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        yield Api(app=app, client=client)


async def create_contact(client: httpx.AsyncClient, **fields: Any) -> str:
    """Create a contact through the API; return its id."""
    response = await client.post("/v1/contacts", json=fields)
    assert response.status_code == 201, response.text
    contact_id: str = response.json()["id"]
    return contact_id


async def create_template(client: httpx.AsyncClient, **fields: Any) -> str:
    """Create a template through the API; return its id."""
    body = {
        "name": "invitation",
        "subject": "You're invited, {{ first_name }}!",
        "html": "<p>Dear {{ first_name }}, join us at {{ venue }}.</p>",
        "text": "Dear {{ first_name }}, join us at {{ venue }}.",
        "variables": ["venue"],
    }
    body.update(fields)
    response = await client.post("/v1/templates", json=body)
    assert response.status_code == 201, response.text
    template_id: str = response.json()["id"]
    return template_id


async def seed_deliveries(
    sessions: async_sessionmaker[AsyncSession],
    *,
    count: int,
    org_name: str = "Seeded",
    priority: int = 2,
    email_domain: str = "example.com",
) -> list[uuid.UUID]:
    """Insert an organization, ``count`` contacts, a template and one queued delivery per
    contact, straight into the database (fast set-up for queue tests). Returns delivery ids."""
    now = utc_now()
    async with sessions() as session, session.begin():
        org = Organization(name=org_name)
        session.add(org)
        await session.flush()
        template = Template(organization_id=org.id, name="t", channel="email", latest_version=1)
        session.add(template)
        await session.flush()
        version = TemplateVersion(
            organization_id=org.id,
            template_id=template.id,
            version=1,
            subject="Hello {{ first_name }}",
            text="Hi {{ first_name }}",
            variables=[],
        )
        session.add(version)
        await session.flush()
        message = Message(
            organization_id=org.id,
            template_id=template.id,
            template_version_id=version.id,
            channel="email",
            priority=priority,
            send_at=now,
            status="accepted",
            recipient_count=count,
        )
        session.add(message)
        await session.flush()
        contact_rows = [
            {
                "id": new_id(),
                "organization_id": org.id,
                "email": f"guest{i}@{email_domain}",
                "first_name": f"Guest{i}",
                "attributes": {},
                "tags": [],
                "created_at": now,
                "updated_at": now,
            }
            for i in range(count)
        ]
        delivery_ids = [new_id() for _ in range(count)]
        delivery_rows = [
            {
                "id": delivery_id,
                "organization_id": org.id,
                "message_id": message.id,
                "contact_id": contact["id"],
                "channel": "email",
                "status": "queued",
                "priority": priority,
                "send_at": now,
                "attempts": 0,
                "idempotency_key": f"dlv_{delivery_id.hex}",
                "template_version_id": version.id,
                "created_at": now,
                "updated_at": now,
            }
            for delivery_id, contact in zip(delivery_ids, contact_rows, strict=True)
        ]
        conn = await session.connection()
        for start in range(0, count, 2000):
            await conn.execute(insert(Contact.__table__), contact_rows[start : start + 2000])
            await conn.execute(insert(Delivery.__table__), delivery_rows[start : start + 2000])
    return delivery_ids
