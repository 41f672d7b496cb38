"""Privacy requests: export holds every row of the contact and none of another's, CSV cells
cannot start a formula, erasure leaves no personal field anywhere in the raw tables and keeps
suppressions by keyed hash, retention anonymises old deliveries only; each run recorded."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guestcomms.app import create_worker
from guestcomms.compliance.hashing import address_hash, hash_key
from guestcomms.compliance.models import Consent, PrivacyRequest
from guestcomms.compliance.repository import SuppressionRepository
from guestcomms.config import Settings
from guestcomms.db.base import Base
from guestcomms.db.engine import create_session_factory, engine_for
from guestcomms.domain.clock import utc_now
from guestcomms.domain.ids import IdKind, from_public
from guestcomms.inbound.models import InboundEventRecord
from guestcomms.messages.models import Delivery
from guestcomms.organizations.models import Organization
from guestcomms.outbox.models import OutboxMessage
from guestcomms.privacy.export import neutralise, to_zip
from guestcomms.privacy.service import retention_runs
from tests.support import create_contact, create_key, create_template, make_settings, running_app

ZELDA = {
    "email": "zelda.quokka@privacy.example",
    "phone": "+14155550123",
    "first_name": "Zeldaquokka",
    "last_name": "Xylophonist",
    "attributes": {"allergy": "peanut-brittle-unique"},
    "webhook_url": "https://hooks.zelda-unique.example/in",
}


@dataclass
class Setup:
    """A running app, one organization's client, and the database behind them."""

    settings: Settings
    client: httpx.AsyncClient
    sessions: async_sessionmaker[AsyncSession]
    organization: Organization
    template: str


@contextlib.asynccontextmanager
async def org_setup(
    database_url: str, *, template_name: str = "invitation", **overrides: Any
) -> AsyncIterator[Setup]:
    """An app with one organization (a template sending email) and a session factory on an
    engine of its own, protecting fields as the app does (``overrides``: more settings)."""
    settings = make_settings(database_url, **overrides)
    engine = engine_for(settings)
    key = await create_key(database_url, "Privacy Org")
    try:
        async with running_app(settings) as api, api.as_key(key) as client:
            sessions = create_session_factory(engine)
            async with sessions() as session:
                organization = await session.scalar(
                    select(Organization).where(Organization.name == "Privacy Org")
                )
            assert organization is not None
            template = await create_template(client, name=template_name)
            yield Setup(settings, client, sessions, organization, template)
    finally:
        await engine.dispose()


async def send(setup: Setup, contact: str, **variables: str) -> str:
    """Send the template to ``contact`` with per-recipient variables; the message id."""
    response = await setup.client.post(
        "/v1/messages",
        json={
            "template_id": setup.template,
            "recipients": [{"contact_id": contact, "variables": variables}],
            "variables": {"venue": "Lake Como"},
        },
    )
    assert response.status_code == 202, response.text
    message: str = response.json()["id"]
    return message


async def add_consent(setup: Setup, contact: str, *, source: str, proof: dict[str, Any]) -> None:
    """A granted marketing email consent of ``contact``."""
    async with setup.sessions() as session, session.begin():
        session.add(
            Consent(
                organization_id=setup.organization.id,
                contact_id=from_public(IdKind.CONTACT, contact),
                channel="email",
                purpose="marketing",
                granted=True,
                source=source,
                proof=proof,
            )
        )


async def run_worker(setup: Setup) -> None:
    """Send everything due."""
    async with create_worker(setup.settings) as worker:
        await worker.run_until_idle()


async def test_export_holds_every_delivery_and_consent_of_the_contact_only(
    database_url: str,
) -> None:
    """The JSON export lists the contact's deliveries and consents and none of another
    contact's; it is recorded as a privacy request."""
    async with org_setup(database_url) as setup:
        zelda = await create_contact(setup.client, email="zelda@privacy.example")
        other = await create_contact(setup.client, email="other@privacy.example")
        for _ in range(2):
            await send(setup, zelda)
        await send(setup, other)
        await add_consent(setup, zelda, source="rsvp-form", proof={"form": "zelda"})
        await add_consent(setup, other, source="import", proof={"form": "other"})
        await run_worker(setup)
        response = await setup.client.get(f"/v1/contacts/{zelda}/export")
        assert response.status_code == 200, response.text
        document = response.json()
        assert document["contact"]["email"] == "zelda@privacy.example"
        async with setup.sessions() as session:
            theirs = set(
                await session.scalars(
                    select(Delivery.id).where(
                        Delivery.contact_id == from_public(IdKind.CONTACT, zelda)
                    )
                )
            )
        exported = {from_public(IdKind.DELIVERY, d["id"]) for d in document["deliveries"]}
        assert exported == theirs
        assert len(exported) == 2
        assert {d["contact_id"] for d in document["deliveries"]} == {zelda}
        assert [c["source"] for c in document["consents"]] == ["rsvp-form"]
        events = document["delivery_events"]
        assert events
        assert {from_public(IdKind.DELIVERY, e["delivery_id"]) for e in events} <= theirs
        assert "other@privacy.example" not in response.text
        async with setup.sessions() as session:
            requests = (await session.scalars(select(PrivacyRequest))).all()
        assert [(r.kind, r.contact_id) for r in requests] == [
            ("export", from_public(IdKind.CONTACT, zelda))
        ]
        assert "zelda@" not in json.dumps(requests[0].detail)


def test_csv_cells_that_could_start_a_formula_are_neutralised() -> None:
    """Each of = + - @ tab and CR at the start of a cell gets a leading quote."""
    values = ['=HYPERLINK("http://x")', "+1", "-2", "@x", "\tx", "\rx", "plain", "a=b"]
    archive = zipfile.ZipFile(io.BytesIO(to_zip({"contact": [{"v": v} for v in values]})))
    rows = list(csv.reader(io.StringIO(archive.read("contact.csv").decode())))
    assert [row[0] for row in rows[1:]] == [
        '\'=HYPERLINK("http://x")',
        "'+1",
        "'-2",
        "'@x",
        "'\tx",
        "'\rx",
        "plain",
        "a=b",
    ]
    assert neutralise("=1") == "'=1"


async def test_csv_export_neutralises_a_contacts_formula_fields(database_url: str) -> None:
    """A contact named ``=HYPERLINK(...)`` / ``+1`` exports as inert text in a zip of CSVs."""
    async with org_setup(database_url) as setup:
        contact = await create_contact(
            setup.client,
            email="formula@privacy.example",
            first_name='=HYPERLINK("http://evil.example","x")',
            last_name="+1",
            attributes={"note": "@x"},
        )
        response = await setup.client.get(f"/v1/contacts/{contact}/export?format=csv")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/zip"
        archive = zipfile.ZipFile(io.BytesIO(response.content))
        assert "deliveries.csv" in archive.namelist()
        rows = list(csv.DictReader(io.StringIO(archive.read("contact.csv").decode())))
        assert rows[0]["first_name"] == '\'=HYPERLINK("http://evil.example","x")'
        assert rows[0]["last_name"] == "'+1"
        assert json.loads(rows[0]["attributes"]) == {"note": "@x"}


async def raw_dump(setup: Setup) -> str:
    """Every row of every table, stringified, read with plain SQL."""
    parts: list[str] = []
    async with setup.sessions() as session:
        for table in Base.metadata.sorted_tables:
            rows = await session.execute(text(f'SELECT * FROM "{table.name}"'))  # noqa: S608
            parts += [repr(tuple(row)) for row in rows]
    return "\n".join(parts)


async def seed_zelda(setup: Setup) -> str:
    """Zelda with deliveries, an event guest record, a consent, a suppression of her email,
    an inbound event naming her phone, and her rendered emails in the dev outbox."""
    zelda = await create_contact(setup.client, **ZELDA)
    await send(setup, zelda, venue="Zeldaquokka-the-brave")
    event = await setup.client.post(
        "/v1/events", json={"name": "Wedding", "date": "2026-06-20", "timezone": "Europe/Rome"}
    )
    assert event.status_code == 201, event.text
    guest = await setup.client.post(
        f"/v1/events/{event.json()['id']}/guests",
        json={"contact_id": zelda, "dietary": "peanut-brittle-unique", "table": "Xylophonist"},
    )
    assert guest.status_code == 201, guest.text
    await add_consent(setup, zelda, source="rsvp-form", proof={"email": ZELDA["email"]})
    await run_worker(setup)
    async with setup.sessions() as session, session.begin():
        repo = SuppressionRepository(session, setup.organization.id)
        await repo.suppress(
            channel="email",
            address=ZELDA["email"],
            reason="hard_bounce",
            detail={"diagnostic": f"550 {ZELDA['email']} unknown"},
        )
        session.add(
            InboundEventRecord(
                organization_id=setup.organization.id,
                provider="twilio",
                event_id="SM1",
                type="inbound",
                raw={"From": ZELDA["phone"], "Body": "STOP"},
            )
        )
    return zelda


async def test_erasure_leaves_no_personal_field_and_keeps_the_suppression(
    database_url: str,
) -> None:
    """After erasure no personal value of the contact is in any raw table, their deliveries
    remain as anonymous rows, and a re-imported contact with the same email is blocked."""
    async with org_setup(database_url) as setup:
        zelda = await seed_zelda(setup)
        personal = [
            ZELDA["email"],
            ZELDA["phone"],
            ZELDA["first_name"],
            ZELDA["last_name"],
            "peanut-brittle-unique",
            "zelda-unique.example",
            "Zeldaquokka-the-brave",
        ]
        dump = await raw_dump(setup)
        assert all(value in dump for value in personal)  # the scan would see them
        response = await setup.client.post(f"/v1/contacts/{zelda}/erase")
        assert response.status_code == 200, response.text
        erased = response.json()
        assert erased["kind"] == "erase"
        key = hash_key(setup.settings)
        assert erased["detail"]["address_hashes"] == {
            "email": address_hash(key, "email", ZELDA["email"]),
            "sms": address_hash(key, "sms", ZELDA["phone"]),
        }
        dump = await raw_dump(setup)
        assert [value for value in personal if value.lower() in dump.lower()] == []
        async with setup.sessions() as session:
            kept = (await session.scalars(select(Delivery.status))).all()
        assert kept == ["sent"]  # the history stays, as an anonymous count
        # re-importing the same email does not lift the suppression
        response = await setup.client.post(
            "/v1/contacts/import",
            json=[{"email": ZELDA["email"].upper(), "first_name": "Again"}],
        )
        assert response.status_code == 200, response.text
        contacts = (await setup.client.get("/v1/contacts")).json()["items"]
        again = next(c["id"] for c in contacts if c["email"] == ZELDA["email"])
        await send(setup, again)
        await run_worker(setup)
        async with setup.sessions() as session:
            statuses = (
                await session.scalars(
                    select(Delivery.status).where(
                        Delivery.contact_id == from_public(IdKind.CONTACT, again)
                    )
                )
            ).all()
        assert statuses == ["blocked"]


async def test_erasure_is_scoped_and_404s_for_unknown_contacts(database_url: str) -> None:
    """A malformed or unknown contact id is a 404, and nothing is recorded."""
    async with org_setup(database_url) as setup:
        for contact in ("ct_nope", f"ct_{'0' * 32}"):
            for method, suffix in (("POST", "erase"), ("GET", "export")):
                response = await setup.client.request(method, f"/v1/contacts/{contact}/{suffix}")
                assert response.status_code == 404, response.text
        async with setup.sessions() as session:
            assert (await session.scalars(select(PrivacyRequest))).all() == []


async def test_retention_anonymises_old_deliveries_and_keeps_recent_ones(
    database_url: str,
) -> None:
    """Deliveries older than retention_days lose their variables, event details and outbox
    rows; recent ones keep them; a dry run changes nothing; the run is recorded."""
    async with org_setup(database_url) as setup:
        contact = await create_contact(setup.client, email="old@privacy.example")
        old_message = await send(setup, contact, venue="old-one")
        await send(setup, contact, venue="new-one")
        await run_worker(setup)
        long_ago = utc_now() - timedelta(days=40)
        old_id = from_public(IdKind.MESSAGE, old_message)
        async with setup.sessions() as session, session.begin():
            await session.execute(
                update(Delivery).where(Delivery.message_id == old_id).values(created_at=long_ago)
            )
            old_delivery = await session.scalar(
                select(Delivery.id).where(Delivery.message_id == old_id)
            )
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.delivery_id == old_delivery)
                .values(created_at=long_ago)
            )
            await session.execute(
                update(Organization)
                .where(Organization.id == setup.organization.id)
                .values(settings={"retention_days": 30})
            )
        async with setup.sessions() as session, session.begin():
            runs = await retention_runs(
                session, organization=None, days=None, actor="test", dry_run=True
            )
        assert [(r.organization, r.days, r.counts["deliveries"]) for r in runs] == [
            ("Privacy Org", 30, 1)
        ]
        assert runs[0].counts["outbox_messages"] == 1
        async with setup.sessions() as session, session.begin():
            runs = await retention_runs(
                session, organization="Privacy Org", days=None, actor="test"
            )
        async with setup.sessions() as session:
            rows = {
                row.id: row
                for row in await session.execute(
                    select(Delivery.id, Delivery.variables, Delivery.status)
                )
            }
            outbox = set(await session.scalars(select(OutboxMessage.delivery_id)))
            requests = (await session.scalars(select(PrivacyRequest))).all()
        assert rows[old_delivery].variables is None
        assert rows[old_delivery].status == "sent"
        recent = next(row for key, row in rows.items() if key != old_delivery)
        assert recent.variables == {"venue": "new-one"}
        assert outbox == {recent.id}
        assert [(r.kind, r.contact_id) for r in requests] == [("retention", None)]
        assert requests[0].detail is not None
        assert requests[0].detail["deliveries"] == 1
