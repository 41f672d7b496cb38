"""Events, households and guests: CRUD and validation, RSVP, import into an event, and the
``event`` and ``guest`` a template sees."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.app import create_worker
from guestcomms.contacts import importing
from guestcomms.contacts.models import ContactTag
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.domain.ids import IdKind, from_public
from guestcomms.events import service as events_service
from guestcomms.events.context import load_event_context
from guestcomms.events.models import EventGuest
from tests.support import create_contact, create_key, create_template, make_settings, running_app

PROBLEM = "application/problem+json"
WEDDING = {
    "name": "Ana & Ben",
    "date": "2026-06-20",
    "start_time": "15:30",
    "timezone": "Europe/Lisbon",
    "venue": "Quinta da Regaleira",
    "outdoor": True,
    "location": {"address": "Sintra", "latitude": 38.796, "longitude": -9.396},
    "attributes": {"dress_code": "garden formal"},
}


@contextlib.asynccontextmanager
async def api_client(database_url: str, org: str = "Ana & Ben") -> AsyncIterator[httpx.AsyncClient]:
    """A running app and a client with an admin key of ``org``."""
    key = await create_key(database_url, org)
    async with running_app(make_settings(database_url)) as api, api.as_key(key) as client:
        yield client


def assert_problem(response: httpx.Response, status: int, *, field: str | None = None) -> str:
    """``response`` is a problem+json of ``status`` naming ``field``; return its detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == PROBLEM
    body = response.json()
    if field is not None:
        assert body.get("field") == field, body
    detail: str = body["detail"]
    return detail


async def create_event(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    """Create an event (the wedding, with ``fields`` changed); return it."""
    response = await client.post("/v1/events", json={**WEDDING, **fields})
    assert response.status_code == 201, response.text
    event: dict[str, Any] = response.json()
    return event


async def all_items(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paged list, two at a time (so paging itself is exercised)."""
    items: list[dict[str, Any]] = []
    query: dict[str, Any] = {"limit": 2, **params}
    while True:
        response = await client.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        query["after"] = page["next_cursor"]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- events ---------------------------------------------------------------------------------


async def test_event_crud_computes_starts_at_in_the_event_zone(database_url: str) -> None:
    """An event's UTC start follows its date, local time and zone through every change."""
    async with api_client(database_url) as client:
        event = await create_event(client)
        assert event["id"].startswith("evt_")
        assert (event["date"], event["start_time"]) == ("2026-06-20", "15:30")
        # Lisbon is UTC+1 in June
        assert _instant(event["starts_at"]) == datetime(2026, 6, 20, 14, 30, tzinfo=UTC)
        assert event["location"] == WEDDING["location"]
        assert (await client.get(f"/v1/events/{event['id']}")).json() == event

        response = await client.patch(f"/v1/events/{event['id']}", json={"start_time": None})
        assert response.status_code == 200, response.text
        assert response.json()["start_time"] is None
        assert _instant(response.json()["starts_at"]) == datetime(2026, 6, 19, 23, tzinfo=UTC)
        response = await client.patch(
            f"/v1/events/{event['id']}",
            json={"timezone": "America/New_York", "start_time": "18:00", "venue": None},
        )
        changed = response.json()
        assert _instant(changed["starts_at"]) == datetime(2026, 6, 20, 22, tzinfo=UTC)
        assert changed["venue"] is None
        assert changed["name"] == WEDDING["name"]  # untouched fields stay

        # 01:30 does not exist in Lisbon on 2026-03-29 (clocks jump 01:00 -> 02:00): it is
        # read with the offset before the jump, so 02:30 WEST, as scheduling reads it
        response = await client.patch(
            f"/v1/events/{event['id']}",
            json={"timezone": "Europe/Lisbon", "date": "2026-03-29", "start_time": "01:30"},
        )
        assert _instant(response.json()["starts_at"]) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)

        others = [(await create_event(client, name=f"Party {i}"))["id"] for i in range(3)]
        listed = await all_items(client, "/v1/events")
        assert [e["id"] for e in listed] == [event["id"], *others]

        assert (await client.delete(f"/v1/events/{event['id']}")).status_code == 204
        assert_problem(await client.get(f"/v1/events/{event['id']}"), 404)
        assert [e["id"] for e in await all_items(client, "/v1/events")] == others


@pytest.mark.parametrize(
    ("fields", "field", "hint"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone", "IANA"),
        ({"timezone": "not a zone/../x"}, "timezone", "IANA"),
        ({"date": "20/06/2026"}, "date", "YYYY-MM-DD"),
        ({"date": "2026-02-30"}, "date", "not a date"),
        ({"start_time": "3pm"}, "start_time", "HH:MM"),
        ({"start_time": "25:00"}, "start_time", "not a time"),
        ({"location": {"latitude": 91}}, "location.latitude", "90"),
        ({"location": {"longitude": -181}}, "location.longitude", "180"),
        ({"name": ""}, "name", "character"),
        ({"organization_id": str(uuid.uuid4())}, "organization_id", "not permitted"),
    ],
)
async def test_bad_event_fields_are_422_naming_the_field(
    sqlite_url: str, fields: dict[str, Any], field: str, hint: str
) -> None:
    """Each bad field is a 422 problem naming it and saying what is expected; nothing is made."""
    async with api_client(sqlite_url) as client:
        response = await client.post("/v1/events", json={**WEDDING, **fields})
        detail = assert_problem(response, 422, field=field)
        assert hint in detail, detail
        assert (await client.get("/v1/events")).json()["items"] == []


async def test_event_requires_name_date_and_zone_and_keeps_them(database_url: str) -> None:
    """A missing required field is a 422 naming it, and PATCH cannot clear one."""
    async with api_client(database_url) as client:
        for missing in ("name", "date", "timezone"):
            body = {k: v for k, v in WEDDING.items() if k != missing}
            assert_problem(await client.post("/v1/events", json=body), 422, field=missing)
        event = await create_event(client)
        for name in ("name", "date", "timezone", "outdoor"):
            response = await client.patch(f"/v1/events/{event['id']}", json={name: None})
            assert_problem(response, 422, field=name)
        response = await client.patch(f"/v1/events/{event['id']}", json={"timezone": "Nowhere/X"})
        assert_problem(response, 422, field="timezone")
        assert (await client.get(f"/v1/events/{event['id']}")).json() == event


# --- households and guests ------------------------------------------------------------------


async def test_guests_and_households(database_url: str) -> None:
    """Guests embed their contact, reference a household of the event, filter by role and
    RSVP, and refuse duplicates, unknown contacts and other events' households."""
    async with api_client(database_url) as client:
        event = (await create_event(client))["id"]
        other_event = (await create_event(client, name="Rehearsal dinner"))["id"]
        base = f"/v1/events/{event}"
        response = await client.post(
            f"{base}/households", json={"name": "The Silvas", "address": "Rua 1, Lisboa"}
        )
        assert response.status_code == 201, response.text
        silvas = response.json()
        assert silvas["id"].startswith("hh_")
        assert silvas["event_id"] == event
        elsewhere = (
            await client.post(f"/v1/events/{other_event}/households", json={"name": "Elsewhere"})
        ).json()["id"]

        ana = await create_contact(client, email="ana@example.com", first_name="Ana")
        bea = await create_contact(client, email="bea@example.com", first_name="Bea")
        florist = await create_contact(client, phone="+14155550123", first_name="Flora")
        response = await client.post(
            f"{base}/guests",
            json={
                "contact_id": ana,
                "household_id": silvas["id"],
                "side": "bride",
                "table": "7",
                "dietary": "vegetarian",
                "attributes": {"plus_one": True},
            },
        )
        assert response.status_code == 201, response.text
        guest = response.json()
        assert guest["contact"] == {
            "id": ana,
            "first_name": "Ana",
            "last_name": None,
            "email": "ana@example.com",
            "phone": None,
        }
        assert (guest["role"], guest["rsvp"], guest["rsvp_at"]) == ("guest", "pending", None)
        assert (guest["household_id"], guest["table"]) == (silvas["id"], "7")
        await client.post(f"{base}/guests", json={"contact_id": bea, "rsvp": "yes"})
        await client.post(f"{base}/guests", json={"contact_id": florist, "role": "vendor"})

        duplicate = await client.post(f"{base}/guests", json={"contact_id": ana})
        assert_problem(duplicate, 409, field="contact_id")
        cal = await create_contact(client, email="cal@example.com")
        for body, field in [
            ({"contact_id": f"ct_{uuid.uuid4().hex}"}, "contact_id"),
            ({"contact_id": "nobody"}, "contact_id"),
            ({"contact_id": cal, "role": "groom"}, "role"),
            ({"contact_id": cal, "household_id": elsewhere}, "household_id"),
            ({"contact_id": cal, "household_id": "hh_nope"}, "household_id"),
        ]:
            assert_problem(await client.post(f"{base}/guests", json=body), 422, field=field)

        everyone = await all_items(client, f"{base}/guests")
        assert sorted(g["contact"]["id"] for g in everyone) == sorted([ana, bea, florist])
        vendors = await all_items(client, f"{base}/guests", role="vendor")
        assert [g["contact"]["id"] for g in vendors] == [florist]
        said_yes = await all_items(client, f"{base}/guests", rsvp="yes")
        assert [g["contact"]["id"] for g in said_yes] == [bea]
        assert said_yes[0]["rsvp_at"] is not None  # added with an answer: answered now
        assert_problem(
            await client.get(f"{base}/guests", params={"rsvp": "perhaps"}), 422, field="rsvp"
        )

        response = await client.patch(
            f"{base}/households/{silvas['id']}", json={"name": "Silva family"}
        )
        assert response.json()["name"] == "Silva family"
        assert response.json()["address"] == "Rua 1, Lisboa"
        households = await all_items(client, f"{base}/households")
        assert [h["name"] for h in households] == ["Silva family"]
        assert (await client.delete(f"{base}/households/{silvas['id']}")).status_code == 204
        assert (await client.get(f"{base}/guests/{ana}")).json()["household_id"] is None

        response = await client.patch(f"{base}/guests/{ana}", json={"table": None, "side": "groom"})
        assert (response.json()["table"], response.json()["side"]) == (None, "groom")
        assert (await client.delete(f"{base}/guests/{ana}")).status_code == 204
        assert_problem(await client.get(f"{base}/guests/{ana}"), 404)
        assert (await client.get(f"/v1/contacts/{ana}")).status_code == 200  # the contact stays

        assert (await client.delete(base)).status_code == 204
        assert_problem(await client.get(f"{base}/guests/{bea}"), 404)
        assert (await client.get(f"/v1/contacts/{bea}")).status_code == 200


async def test_rsvp_stamps_rsvp_at_and_rechecks_reminders_in_the_transaction(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An RSVP sets rsvp and rsvp_at; every RSVP or attribute change calls the reminders
    hook for that contact inside the request's transaction, and other changes do not."""
    calls: list[list[uuid.UUID]] = []

    async def recorder(
        session: AsyncSession, *, organization_id: uuid.UUID, contact_ids: Sequence[uuid.UUID]
    ) -> int:
        assert session.in_transaction()
        calls.append(list(contact_ids))
        return 0

    monkeypatch.setattr(events_service, "recheck_reminders", recorder)
    async with api_client(database_url) as client:
        event = (await create_event(client))["id"]
        ana = await create_contact(client, email="ana@example.com")
        ana_key = from_public(IdKind.CONTACT, ana)
        base = f"/v1/events/{event}/guests"
        await client.post(base, json={"contact_id": ana})

        before = datetime.now(UTC)
        response = await client.post(f"{base}/{ana}/rsvp", json={"rsvp": "yes"})
        assert response.status_code == 200, response.text
        assert response.json()["rsvp"] == "yes"
        answered = _instant(response.json()["rsvp_at"])
        assert before - timedelta(seconds=1) <= answered <= datetime.now(UTC)
        assert calls == [[ana_key]]
        assert (await client.get(f"{base}/{ana}")).json()["rsvp"] == "yes"

        await client.patch(f"{base}/{ana}", json={"table": "3"})  # not a condition change
        assert len(calls) == 1
        await client.patch(f"{base}/{ana}", json={"attributes": {"shuttle": True}})
        assert len(calls) == 2
        response = await client.patch(f"{base}/{ana}", json={"rsvp": "pending"})
        assert (response.json()["rsvp"], response.json()["rsvp_at"]) == ("pending", None)
        assert len(calls) == 3
        bad = await client.post(f"{base}/{ana}/rsvp", json={"rsvp": "perhaps"})
        assert_problem(bad, 422, field="rsvp")
        assert_problem(await client.patch(f"{base}/{ana}", json={"rsvp": None}), 422, field="rsvp")
        assert len(calls) == 3


# --- import into an event -------------------------------------------------------------------


async def test_csv_import_into_event_adds_guests_and_reuses_households(database_url: str) -> None:
    """Guest columns land on the guest, households are created once per name (any case) and
    reused, existing contacts and guests are updated, and bad rows are reported while good
    rows are kept."""
    async with api_client(database_url) as client:
        event = (await create_event(client))["id"]
        base = f"/v1/events/{event}"
        existing = await client.post(f"{base}/households", json={"name": "The Silvas"})
        silvas = existing.json()["id"]
        ana = await create_contact(client, email="ana@example.com", first_name="Ana")
        await client.post(f"{base}/guests", json={"contact_id": ana, "table": "1"})
        csv_text = (
            "email,first_name,rsvp,side,table,dietary,household,role,tags,shoe_size\r\n"
            "ana@example.com,Ana,Yes,bride,7,,the silvas,,family,38\r\n"
            "bea@example.com,Bea,no,groom,8,vegan,The Costas,,,\r\n"
            "not-an-email,Typo,yes,,,,,,,\r\n"
            "cal@example.com,Cal,perhaps,,,,,,,\r\n"
            "dan@example.com,Dan,,,9,,THE COSTAS,vendor,,\r\n"
            "eve@example.com,Eve,maybe,,,,,,,\r\n"
        )
        response = await client.post(
            "/v1/contacts/import",
            params={"event_id": event},
            content=csv_text.encode(),
            headers={"content-type": "text/csv"},
        )
        assert response.status_code == 200, response.text
        report = response.json()
        assert [(e["row"], e["field"]) for e in report["errors"]] == [(3, "email"), (4, "rsvp")]
        assert (report["created"], report["updated"]) == (3, 1)
        assert (report["added_to_event"], report["updated_in_event"]) == (3, 1)
        assert report["households_created"] == 1

        guests = {g["contact"]["email"]: g for g in await all_items(client, f"{base}/guests")}
        assert set(guests) == {
            "ana@example.com",
            "bea@example.com",
            "dan@example.com",
            "eve@example.com",
        }
        households = {h["name"]: h["id"] for h in await all_items(client, f"{base}/households")}
        assert set(households) == {"The Silvas", "The Costas"}
        assert households["The Silvas"] == silvas
        ana_guest = guests["ana@example.com"]
        assert (ana_guest["rsvp"], ana_guest["table"], ana_guest["side"]) == ("yes", "7", "bride")
        assert ana_guest["household_id"] == silvas
        assert ana_guest["rsvp_at"] is not None
        assert guests["bea@example.com"]["household_id"] == households["The Costas"]
        assert guests["dan@example.com"]["household_id"] == households["The Costas"]
        assert (guests["dan@example.com"]["role"], guests["dan@example.com"]["rsvp"]) == (
            "vendor",
            "pending",
        )
        assert guests["bea@example.com"]["dietary"] == "vegan"
        contact = (await client.get(f"/v1/contacts/{ana}")).json()
        assert contact["tags"] == ["family"]
        assert contact["attributes"] == {"shoe_size": "38"}  # not a guest column: an attribute

        # the same file again: nothing new, the households reused, the answers unchanged
        again = await client.post(
            "/v1/contacts/import",
            params={"event_id": event},
            content=csv_text.encode(),
            headers={"content-type": "text/csv"},
        )
        report = again.json()
        assert (report["created"], report["updated"], report["added_to_event"]) == (0, 4, 0)
        assert (report["updated_in_event"], report["households_created"]) == (4, 0)
        assert len(await all_items(client, f"{base}/households")) == 2
        assert (await client.get(f"{base}/guests/{ana}")).json()["rsvp_at"] == ana_guest["rsvp_at"]


async def test_import_event_errors_name_the_field(database_url: str) -> None:
    """An unknown or malformed event is a 422 naming event_id (another organization's event is
    unknown), and guest fields without an event are refused row by row."""
    async with api_client(database_url, org="Other") as other:
        theirs = (await create_event(other))["id"]
    async with api_client(database_url) as client:
        for event_id in (theirs, "evt_nope", f"ct_{uuid.uuid4().hex}"):
            response = await client.post(
                "/v1/contacts/import",
                params={"event_id": event_id},
                json=[{"email": "ana@example.com"}],
            )
            assert_problem(response, 422, field="event_id")
        assert (await client.get("/v1/contacts")).json()["items"] == []
        response = await client.post(
            "/v1/contacts/import",
            json=[{"email": "ana@example.com", "rsvp": "yes"}, {"email": "bea@example.com"}],
        )
        report = response.json()
        assert [(e["row"], e["field"]) for e in report["errors"]] == [(1, "rsvp")]
        assert "event" in report["errors"][0]["message"]
        assert report["created"] == 1
        mine = (await create_event(client))["id"]
        response = await client.post(
            "/v1/contacts/import",
            params={"event_id": mine},
            json=[
                {"email": "cal@example.com", "table": "4", "household": "Cals"},
                {"email": "dan@example.com", "role": None},
                {"email": "eve@example.com", "household": ""},
                {"email": "fay@example.com", "seat": "2"},
            ],
        )
        report = response.json()
        assert [(e["row"], e["field"]) for e in report["errors"]] == [
            (2, "role"),
            (3, "household"),
            (4, "seat"),
        ]
        assert (report["created"], report["added_to_event"]) == (1, 1)


async def test_import_in_chunks_counts_rows_in_file_order(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written chunk by chunk (three rows here), duplicates within and across chunks update
    the contact made by their first row, tags are replaced, households are shared, and only
    an existing guest whose answer changed has its reminders rechecked."""
    monkeypatch.setattr(importing, "IMPORT_CHUNK_ROWS", 3)
    rechecked: list[list[uuid.UUID]] = []

    async def recorder(
        session: AsyncSession, *, organization_id: uuid.UUID, contact_ids: Sequence[uuid.UUID]
    ) -> int:
        assert session.in_transaction()
        rechecked.append(list(contact_ids))
        return 0

    monkeypatch.setattr(importing, "recheck_reminders", recorder)
    async with api_client(database_url) as client:
        event = (await create_event(client))["id"]
        rows: list[dict[str, Any]] = [
            {"email": "g0@example.com", "tags": ["a"], "household": "H1"},
            {"email": "g1@example.com", "household": "h1"},
            {"email": "G0@example.com", "first_name": "Gia", "rsvp": "no"},  # same chunk
            {"email": "g2@example.com", "household": "H2"},
            {"email": "bad"},
            {"email": "g0@example.com", "tags": ["b", "c"], "rsvp": "yes"},  # next chunk
            {"phone": "+14155550123", "household": "h2"},  # no email: always a new contact
        ]
        response = await client.post("/v1/contacts/import", params={"event_id": event}, json=rows)
        report = response.json()
        assert [(e["row"], e["field"]) for e in report["errors"]] == [(5, "email")]
        assert (report["created"], report["updated"]) == (4, 2)
        assert (report["added_to_event"], report["updated_in_event"]) == (4, 1)
        assert report["households_created"] == 2
        contacts = {c["email"]: c for c in (await client.get("/v1/contacts")).json()["items"]}
        assert len(contacts) == 4
        assert contacts["g0@example.com"]["first_name"] == "Gia"
        assert contacts["g0@example.com"]["tags"] == ["b", "c"]
        g0 = from_public(IdKind.CONTACT, contacts["g0@example.com"]["id"])
        assert rechecked == [[g0]]  # chunk 2 changed its RSVP (and tags); chunk 1 created it
        guests = {
            g["contact"]["email"]: g for g in await all_items(client, f"/v1/events/{event}/guests")
        }
        assert guests["g0@example.com"]["rsvp"] == "yes"
        assert guests["g0@example.com"]["household_id"] == guests["g1@example.com"]["household_id"]
        assert guests[None]["household_id"] == guests["g2@example.com"]["household_id"]
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session:
            tags = await session.scalars(select(ContactTag.tag).order_by(ContactTag.tag))
            assert list(tags) == ["b", "c"]  # the side table follows the replaced tags
    finally:
        await engine.dispose()


# --- rendering ------------------------------------------------------------------------------


async def test_message_about_an_event_renders_event_and_guest(database_url: str) -> None:
    """A template may use `event` and `guest` (accepted at save, never declarable), and a
    message about an event renders them per guest; a non-guest gets an empty `guest`."""
    settings = make_settings(database_url)
    key = await create_key(database_url, "Ana & Ben")
    async with running_app(settings) as api, api.as_key(key) as client:
        event = (await create_event(client))["id"]
        ana = await create_contact(client, email="ana@example.com", first_name="Ana")
        bea = await create_contact(client, email="bea@example.com", first_name="Bea")
        await client.post(f"/v1/events/{event}/households", json={"name": "Silvas"})
        await client.post(
            "/v1/contacts/import",
            params={"event_id": event},
            json=[{"email": "ana@example.com", "table": "7", "household": "Silvas"}],
        )
        template = await create_template(
            client,
            subject="{{ event.name }} on {{ event.date }} at {{ event.start_time }}",
            text=(
                "{{ first_name }}: {{ event.venue }} ({{ event.location.address }}), "
                "table {{ guest.table or 'tbc' }}, household {{ guest.household }}, "
                "rsvp {{ guest.rsvp }}{% if event.outdoor %}, outdoors{% endif %}"
            ),
            html=None,
            variables=[],
        )
        refused = await client.post(
            "/v1/templates", json={"name": "x", "subject": "s", "text": "t", "variables": ["guest"]}
        )
        assert_problem(refused, 422, field="variables")
        unknown = await client.post(
            "/v1/messages",
            json={"template_id": template, "contact_ids": [ana], "event_id": "evt_nope"},
        )
        assert_problem(unknown, 422, field="event_id")
        response = await client.post(
            "/v1/messages",
            json={"template_id": template, "contact_ids": [ana, bea], "event_id": event},
        )
        assert response.status_code == 202, response.text
        async with create_worker(settings) as worker:
            assert await worker.run_until_idle() == 2
        outbox = {
            item["recipient"]: item for item in (await client.get("/v1/outbox")).json()["items"]
        }
    assert outbox["ana@example.com"]["subject"] == "Ana & Ben on 2026-06-20 at 15:30"
    assert outbox["ana@example.com"]["text"] == (
        "Ana: Quinta da Regaleira (Sintra), table 7, household Silvas, rsvp pending, outdoors"
    )
    assert outbox["bea@example.com"]["text"] == (
        "Bea: Quinta da Regaleira (Sintra), table tbc, household , rsvp , outdoors"
    )


async def test_event_context_is_two_queries_per_batch(sqlite_url: str) -> None:
    """The composer reads a batch's events and guests in two queries, however many guests."""
    key = await create_key(sqlite_url, "Ana & Ben")
    async with running_app(make_settings(sqlite_url)) as api, api.as_key(key) as client:
        event = (await create_event(client))["id"]
        rows = [{"email": f"g{i}@example.com", "table": str(i)} for i in range(30)]
        await client.post("/v1/contacts/import", params={"event_id": event}, json=rows)
    engine = create_engine(sqlite_url)
    statements: list[str] = []
    sa_event.listen(
        engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(args[2])
    )
    try:
        async with create_session_factory(engine)() as session:
            event_key = from_public(IdKind.EVENT, event)
            guests = await session.scalars(select(EventGuest.contact_id))
            pairs = [(event_key, contact_id) for contact_id in guests]
            statements.clear()
            context = await load_event_context(session, pairs)
    finally:
        await engine.dispose()
    assert len(statements) == 2, statements
    assert len(context.guests) == 30
    assert {g["table"] for g in context.guests.values()} == {str(i) for i in range(30)}
