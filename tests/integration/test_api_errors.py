"""Bad input: each error is a problem+json naming the field, and nothing already accepted changes.

Every rejected request is followed by a read of the organization's state through the API
(contacts, templates, messages with their delivery counts), which must be exactly what it was.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx

from tests.support import create_contact, create_key, create_template, make_settings, running_app

PROBLEM = "application/problem+json"
VENUE = {"venue": "Lake Como"}


def assert_problem(
    response: httpx.Response, status: int, *, field: str | None = None, slug: str | None = None
) -> dict[str, Any]:
    """Check that ``response`` is an RFC 9457 problem with ``status`` (and ``field``/``slug``)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == PROBLEM, response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("/problems/")
    assert body["title"]
    assert body["detail"]
    if slug is not None:
        assert body["type"] == f"/problems/{slug}"
    if field is not None:
        assert body.get("field") == field, body
    return body


async def _all(client: httpx.AsyncClient, path: str, cursor_param: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 500}
    while True:
        response = await client.get(path, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        params[cursor_param] = page["next_cursor"]


async def snapshot(client: httpx.AsyncClient) -> dict[str, Any]:
    """Everything the organization has, read through the API."""
    messages = await _all(client, "/v1/messages", "before")
    counts = {}
    for message in messages:
        response = await client.get(f"/v1/messages/{message['id']}")
        assert response.status_code == 200, response.text
        counts[message["id"]] = response.json()["counts"]
    return {
        "contacts": await _all(client, "/v1/contacts", "after"),
        "templates": await _all(client, "/v1/templates", "after"),
        "messages": messages,
        "deliveries": counts,
    }


@contextlib.asynccontextmanager
async def api_client(database_url: str, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A running app on ``database_url`` and a client with an admin key."""
    key = await create_key(database_url, "Ana & Ben")
    settings = make_settings(database_url, **overrides)
    async with running_app(settings) as api, api.as_key(key) as client:
        yield client


async def seeded(client: httpx.AsyncClient) -> tuple[str, str, str]:
    """A contact, a template and one accepted message: state that must survive bad requests."""
    ana = await create_contact(
        client, email="ana@example.com", first_name="Ana", phone="+14155550123"
    )
    template = await create_template(client)
    response = await client.post(
        "/v1/messages", json={"template_id": template, "contact_ids": [ana], "variables": VENUE}
    )
    assert response.status_code == 202, response.text
    return ana, template, response.json()["id"]


def unknown(prefix: str) -> str:
    """A well-formed public id that names nothing."""
    return f"{prefix}_{uuid.uuid4().hex}"


# --- contacts: addresses and fields --------------------------------------------------------


async def test_malformed_email_is_refused_naming_email(database_url: str) -> None:
    """A malformed email on create or update is a 422 naming `email`; nothing changes."""
    async with api_client(database_url) as client:
        ana, _, _ = await seeded(client)
        before = await snapshot(client)
        for email in ("not-an-email", "ana@", "@example.com", "ana example@x.com", "a@b@c.com"):
            created = await client.post("/v1/contacts", json={"email": email, "first_name": "Cy"})
            assert_problem(created, 422, field="email", slug="validation-error")
            updated = await client.patch(f"/v1/contacts/{ana}", json={"email": email})
            assert_problem(updated, 422, field="email", slug="validation-error")
        # a contact left with neither an email nor a phone is refused too
        cleared = await client.patch(f"/v1/contacts/{ana}", json={"email": None, "phone": None})
        assert_problem(cleared, 422, field="email")
        created = await client.post("/v1/contacts", json={"first_name": "Nobody"})
        assert_problem(created, 422, field="email")
        assert await snapshot(client) == before


async def test_malformed_phone_is_refused_naming_phone(database_url: str) -> None:
    """A malformed phone, or a national one with no default region, is a 422 naming `phone`."""
    async with api_client(database_url) as client:
        ana, _, _ = await seeded(client)
        before = await snapshot(client)
        # "07911 123456" is a valid UK number, but national: without a region it is ambiguous
        for phone in ("+1 555", "not-a-phone", "+999 123", "12", "07911 123456"):
            created = await client.post(
                "/v1/contacts", json={"email": "cy@example.com", "phone": phone}
            )
            assert_problem(created, 422, field="phone")
            updated = await client.patch(f"/v1/contacts/{ana}", json={"phone": phone})
            assert_problem(updated, 422, field="phone")
        assert await snapshot(client) == before


async def test_valid_phone_is_normalised_to_e164(database_url: str) -> None:
    """A valid number is stored in E.164; a national one too when a default region is set."""
    key = await create_key(database_url, "Ana & Ben")
    async with running_app(make_settings(database_url)) as api, api.as_key(key) as client:
        created = await client.post(
            "/v1/contacts", json={"email": "cy@example.com", "phone": "+44 7911 123456"}
        )
        assert created.status_code == 201, created.text
        assert created.json()["phone"] == "+447911123456"
        contact = created.json()["id"]
        updated = await client.patch(f"/v1/contacts/{contact}", json={"phone": "+1 (415) 555-0123"})
        assert updated.status_code == 200, updated.text
        assert (await client.get(f"/v1/contacts/{contact}")).json()["phone"] == "+14155550123"
    settings = make_settings(database_url, default_phone_region="GB")
    async with running_app(settings) as api, api.as_key(key) as client:
        created = await client.post(
            "/v1/contacts", json={"email": "dee@example.com", "phone": "07911 123456"}
        )
        assert created.status_code == 201, created.text
        assert created.json()["phone"] == "+447911123456"
        updated = await client.patch(f"/v1/contacts/{contact}", json={"phone": "020 7946 0958"})
        assert updated.status_code == 200, updated.text
        assert updated.json()["phone"] == "+442079460958"


async def test_malformed_json_names_the_body(sqlite_url: str) -> None:
    """A body that is not JSON is a 422 naming `body`, not a character offset."""
    async with api_client(sqlite_url) as client:
        response = await client.post(
            "/v1/contacts", content=b'{"email": ', headers={"content-type": "application/json"}
        )
        assert_problem(response, 422, field="body")


async def test_unknown_extra_field_is_refused_naming_it(database_url: str) -> None:
    """An unknown field (e.g. `organization_id`) is a 422 naming it; nothing changes."""
    async with api_client(database_url) as client:
        ana, template, _ = await seeded(client)
        before = await snapshot(client)
        other_org = str(uuid.uuid4())
        created = await client.post(
            "/v1/contacts", json={"email": "cy@example.com", "organization_id": other_org}
        )
        assert_problem(created, 422, field="organization_id")
        patched = await client.patch(f"/v1/contacts/{ana}", json={"organization_id": other_org})
        assert_problem(patched, 422, field="organization_id")
        version = await client.post(
            f"/v1/templates/{template}/versions",
            json={"subject": "Hi", "text": "Hi", "organization_id": other_org},
        )
        assert_problem(version, 422, field="organization_id")
        message = await client.post(
            "/v1/messages",
            json={"template_id": template, "contact_ids": [ana], "variables": VENUE, "sender": "x"},
        )
        assert_problem(message, 422, field="sender")
        assert await snapshot(client) == before


# --- messages: recipients, templates, variables --------------------------------------------


async def test_unknown_contact_in_a_message_names_its_index(database_url: str) -> None:
    """An unknown or wrong-kind contact id is a 422 naming `contact_ids[i]`; no message is made."""
    async with api_client(database_url) as client:
        ana, template, _ = await seeded(client)
        before = await snapshot(client)
        for bad in (unknown("ct"), unknown("tpl"), template, "ct_nothex", ""):
            response = await client.post(
                "/v1/messages",
                json={"template_id": template, "contact_ids": [ana, bad], "variables": VENUE},
            )
            assert_problem(response, 422, field="contact_ids[1]", slug="unknown-contact")
        response = await client.post(
            "/v1/messages",
            json={
                "template_id": template,
                "recipients": [{"contact_id": ana}, {"contact_id": unknown("ct")}],
                "variables": VENUE,
            },
        )
        assert_problem(response, 422, field="recipients[1].contact_id", slug="unknown-contact")
        assert await snapshot(client) == before


async def test_unknown_template_id_is_refused(database_url: str) -> None:
    """An unknown, malformed or wrong-kind template id is a 422 naming `template_id`."""
    async with api_client(database_url) as client:
        ana, _, _ = await seeded(client)
        before = await snapshot(client)
        for bad in (unknown("tpl"), "invitation", ana):
            response = await client.post(
                "/v1/messages", json={"template_id": bad, "contact_ids": [ana], "variables": VENUE}
            )
            assert_problem(response, 422, field="template_id")
        assert await snapshot(client) == before


async def test_message_variables_must_match_the_template(database_url: str) -> None:
    """An undeclared variable, or a declared one left without a value, is a 422 naming it."""
    async with api_client(database_url) as client:
        ana, template, _ = await seeded(client)
        bob = await create_contact(client, email="bob@example.com", first_name="Bob")
        before = await snapshot(client)
        response = await client.post(
            "/v1/messages",
            json={
                "template_id": template,
                "contact_ids": [ana],
                "variables": {"venue": "Lake Como", "dress_code": "black tie"},
            },
        )
        body = assert_problem(response, 422, field="variables.dress_code")
        assert "dress_code" in body["detail"]
        response = await client.post(
            "/v1/messages",
            json={
                "template_id": template,
                "recipients": [{"contact_id": ana, "variables": {"venue": "x", "table": 4}}],
            },
        )
        assert_problem(response, 422, field="recipients[0].variables.table")
        response = await client.post(
            "/v1/messages", json={"template_id": template, "contact_ids": [ana]}
        )
        body = assert_problem(response, 422, field="variables.venue")
        assert "venue" in body["detail"]
        # one recipient has a value of their own, the other has none: still refused
        response = await client.post(
            "/v1/messages",
            json={
                "template_id": template,
                "recipients": [{"contact_id": ana, "variables": VENUE}, {"contact_id": bob}],
            },
        )
        assert_problem(response, 422, field="variables.venue")
        assert await snapshot(client) == before


# --- templates ------------------------------------------------------------------------------


async def test_unknown_template_variable_at_save_names_variable_and_line(database_url: str) -> None:
    """A template using an undeclared variable is refused at save with its part and line."""
    async with api_client(database_url) as client:
        _, template, _ = await seeded(client)
        before = await snapshot(client)
        content = {
            "subject": "You're invited, {{ first_name }}!",
            "html": (
                "<p>Dear {{ first_name }},</p>\n"
                "<p>Join us at {{ venue }}</p>\n"
                "<p>{{ dress_code }}</p>"
            ),
            "variables": ["venue"],
        }
        created = await client.post("/v1/templates", json={"name": "save-the-date", **content})
        body = assert_problem(created, 422, field="html", slug="template-error")
        assert "dress_code" in body["detail"]
        assert body["line"] == 3
        version = await client.post(f"/v1/templates/{template}/versions", json=content)
        body = assert_problem(version, 422, field="html", slug="template-error")
        assert body["line"] == 3
        subject = await client.post(
            "/v1/templates", json={"name": "x", "subject": "Hi {{ nickname }}", "text": "Hello"}
        )
        body = assert_problem(subject, 422, field="subject", slug="template-error")
        assert "nickname" in body["detail"]
        assert body["line"] == 1
        assert await snapshot(client) == before
        assert (await client.get(f"/v1/templates/{template}/versions/2")).status_code == 404


# --- request size ---------------------------------------------------------------------------

LIMIT = 2048


def _rows(count: int) -> list[dict[str, str]]:
    return [{"email": f"guest{i}@example.com", "first_name": f"Guest {i}"} for i in range(count)]


async def test_body_over_the_limit_is_413(database_url: str) -> None:
    """A body whose Content-Length is over the limit is a 413 problem; nothing is imported."""
    async with api_client(database_url, max_body_bytes=LIMIT) as client:
        await seeded(client)
        before = await snapshot(client)
        body = json.dumps(_rows(60)).encode()
        assert len(body) > LIMIT
        response = await client.post(
            "/v1/contacts/import", content=body, headers={"content-type": "application/json"}
        )
        assert_problem(response, 413, slug="payload-too-large")
        response = await client.post(
            "/v1/contacts", json={"email": "cy@example.com", "first_name": "x" * 3000}
        )
        assert_problem(response, 413, slug="payload-too-large")
        assert await snapshot(client) == before


async def _chunks(body: bytes, size: int = 512) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def test_chunked_body_over_the_limit_is_413(database_url: str) -> None:
    """A chunked body (no Content-Length) is counted as it streams: over the limit is a 413."""
    async with api_client(database_url, max_body_bytes=LIMIT) as client:
        await seeded(client)
        before = await snapshot(client)
        body = json.dumps(_rows(60)).encode()
        request = client.build_request(
            "POST",
            "/v1/contacts/import",
            content=_chunks(body),
            headers={"content-type": "application/json"},
        )
        assert "content-length" not in request.headers
        response = await client.send(request)
        assert_problem(response, 413, slug="payload-too-large")
        assert await snapshot(client) == before
        # under the limit, the same chunked upload goes through
        small = json.dumps(_rows(2)).encode()
        response = await client.post(
            "/v1/contacts/import",
            content=_chunks(small, 16),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["created"] == 2


async def test_chunked_body_over_the_limit_is_413_on_json_routes(sqlite_url: str) -> None:
    """A chunked body over the limit sent to a JSON-model route is a 413 too, not a 400."""
    async with api_client(sqlite_url, max_body_bytes=LIMIT) as client:
        await seeded(client)
        before = await snapshot(client)
        body = json.dumps({"email": "cy@example.com", "first_name": "x" * 3000}).encode()
        response = await client.post(
            "/v1/contacts", content=_chunks(body), headers={"content-type": "application/json"}
        )
        assert await snapshot(client) == before
        assert_problem(response, 413, slug="payload-too-large")


# --- authentication -------------------------------------------------------------------------


async def test_missing_or_bad_key_is_401_with_www_authenticate(database_url: str) -> None:
    """A missing, malformed or unknown key is a 401 problem with `WWW-Authenticate: Bearer`."""
    key = await create_key(database_url, "Ana & Ben")
    async with running_app(make_settings(database_url)) as api, api.as_key(key) as good:
        await seeded(good)
        before = await snapshot(good)
        unknown_key = "gck_" + "0" * 12 + "_" + "s" * 43
        prefix_of_real_key = key.rsplit("_", 1)[0] + "_wrong-secret"
        attempts: list[dict[str, str]] = [
            {},
            {"Authorization": "Bearer"},
            {"Authorization": "Bearer not-a-key"},
            {"Authorization": "Bearer gck_short_secret"},
            {"Authorization": f"Bearer {unknown_key}"},
            {"Authorization": f"Bearer {prefix_of_real_key}"},
            {"Authorization": f"Basic {key}"},
        ]
        for headers in attempts:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=api.app), base_url="http://test", headers=headers
            ) as client:
                listed = await client.get("/v1/contacts")
                created = await client.post("/v1/contacts", json={"email": "eve@example.com"})
            for response in (listed, created):
                assert_problem(response, 401, slug="unauthorized")
                assert response.headers["www-authenticate"] == "Bearer", headers
        assert await snapshot(good) == before


# --- bulk import ----------------------------------------------------------------------------


async def test_json_import_keeps_good_rows_and_reports_bad_ones(database_url: str) -> None:
    """A JSON import creates the good rows and reports each bad row's number and field."""
    async with api_client(database_url) as client:
        ana, _, _ = await seeded(client)
        rows = [
            {"email": "bea@example.com", "first_name": "Bea"},
            {"email": "not-an-email", "first_name": "Typo"},
            {"email": "cal@example.com", "phone": "+44 7911 123456", "tags": ["family"]},
            {"email": "dee@example.com", "phone": "+1 555"},
            {"first_name": "Nobody"},
            {"email": "eve@example.com", "organization_id": str(uuid.uuid4())},
            {"email": "fay@example.com", "tags": ["ok", "not ok"]},
        ]
        response = await client.post("/v1/contacts/import", json=rows)
        assert response.status_code == 200, response.text
        report = response.json()
        assert (report["created"], report["updated"]) == (2, 0)
        assert [(e["row"], e["field"]) for e in report["errors"]] == [
            (2, "email"),
            (4, "phone"),
            (5, "email"),
            (6, "organization_id"),
            (7, "tags.1"),
        ]
        assert all(e["message"] for e in report["errors"])
        contacts = {c["email"]: c for c in await _all(client, "/v1/contacts", "after")}
        assert set(contacts) == {"ana@example.com", "bea@example.com", "cal@example.com"}
        assert contacts["cal@example.com"]["phone"] == "+447911123456"
        assert contacts["cal@example.com"]["tags"] == ["family"]
        assert contacts["ana@example.com"]["id"] == ana


async def test_csv_import_keeps_good_rows_and_maps_columns(database_url: str) -> None:
    """A CSV import splits tags on `;`, keeps extra columns as attributes, reports bad rows."""
    async with api_client(database_url) as client:
        await seeded(client)
        csv_text = (
            "email,first_name,tags,rsvp\r\n"
            "bea@example.com,Bea,family;bride-side,yes\r\n"
            "not-an-email,Typo,friends,no\r\n"
            "cal@example.com,Cal,,maybe\r\n"
        )
        response = await client.post(
            "/v1/contacts/import", content=csv_text.encode(), headers={"content-type": "text/csv"}
        )
        assert response.status_code == 200, response.text
        report = response.json()
        assert (report["created"], report["updated"]) == (2, 0)
        assert [(e["row"], e["field"]) for e in report["errors"]] == [(2, "email")]
        contacts = {c["email"]: c for c in await _all(client, "/v1/contacts", "after")}
        assert set(contacts) == {"ana@example.com", "bea@example.com", "cal@example.com"}
        assert contacts["bea@example.com"]["tags"] == ["bride-side", "family"]
        assert contacts["bea@example.com"]["attributes"] == {"rsvp": "yes"}
        assert contacts["bea@example.com"]["first_name"] == "Bea"
        assert contacts["cal@example.com"]["tags"] == []
        assert contacts["cal@example.com"]["attributes"] == {"rsvp": "maybe"}


async def test_import_refuses_bodies_it_cannot_read(database_url: str) -> None:
    """An import that is not a JSON array of objects or a CSV is a 422; nothing changes."""
    async with api_client(database_url) as client:
        await seeded(client)
        before = await snapshot(client)
        cases = [
            (b"{not json", "application/json", "body"),
            (b'{"email": "a@example.com"}', "application/json", "body"),
            (b'["a@example.com"]', "application/json", "body"),
            (b"email\nbea@example.com\n", "text/plain", "content-type"),
            (b"\xff\xfe\x00bad", "text/csv", "body"),
        ]
        for content, media, field in cases:
            response = await client.post(
                "/v1/contacts/import", content=content, headers={"content-type": media}
            )
            assert_problem(response, 422, field=field)
        assert await snapshot(client) == before


async def test_import_update_keeps_fields_the_row_does_not_mention(sqlite_url: str) -> None:
    """Re-importing a contact by email changes only the fields the row gives; its phone stays."""
    async with api_client(sqlite_url) as client:
        ana, _, _ = await seeded(client)
        response = await client.post(
            "/v1/contacts/import", json=[{"email": "ana@example.com", "last_name": "Silva"}]
        )
        assert response.status_code == 200, response.text
        assert (response.json()["created"], response.json()["updated"]) == (0, 1)
        contact = (await client.get(f"/v1/contacts/{ana}")).json()
        assert contact["last_name"] == "Silva"
        assert contact["first_name"] == "Ana"
        assert contact["phone"] == "+14155550123"


# --- paging ---------------------------------------------------------------------------------


async def test_limit_over_the_maximum_page_size_is_refused(database_url: str) -> None:
    """A `limit` over the maximum (or under 1), or a wrong-kind cursor, is a 422 naming it."""
    async with api_client(database_url, max_page_size=100) as client:
        ana, template, message = await seeded(client)
        for path in ("/v1/contacts", "/v1/templates", "/v1/messages", "/v1/outbox"):
            for limit in (101, 10_001, 0, -1):
                response = await client.get(path, params={"limit": limit})
                assert_problem(response, 422, field="limit")
            assert (await client.get(path, params={"limit": 100})).status_code == 200
        for limit in (101, 0):
            response = await client.get(
                f"/v1/messages/{message}", params={"deliveries_limit": limit}
            )
            assert_problem(response, 422, field="deliveries_limit")
        cursors = [
            ("/v1/contacts", "after", template),
            ("/v1/templates", "after", ana),
            ("/v1/messages", "before", ana),
            ("/v1/outbox", "before", message),
            (f"/v1/messages/{message}", "deliveries_after", ana),
        ]
        for path, param, value in cursors:
            response = await client.get(path, params={param: value})
            assert_problem(response, 422, field=param)


async def test_pagination_returns_every_contact_exactly_once(database_url: str) -> None:
    """Following `next_cursor` with limit=3 over 7 contacts yields each once, in creation order."""
    async with api_client(database_url) as client:
        created = [await create_contact(client, email=f"guest{i}@example.com") for i in range(7)]
        seen: list[str] = []
        sizes: list[int] = []
        params: dict[str, Any] = {"limit": 3}
        while True:
            response = await client.get("/v1/contacts", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            sizes.append(len(page["items"]))
            seen += [c["id"] for c in page["items"]]
            if page["next_cursor"] is None:
                break
            params["after"] = page["next_cursor"]
            assert len(sizes) < 10, "pagination does not terminate"
        assert sizes == [3, 3, 1]
        assert seen == created


# --- cancel ---------------------------------------------------------------------------------


async def _cancel_twice(client: httpx.AsyncClient) -> tuple[str, dict[str, Any], httpx.Response]:
    ana, template, _ = await seeded(client)
    bob = await create_contact(client, email="bob@example.com")
    sent = await client.post(
        "/v1/messages",
        json={"template_id": template, "contact_ids": [ana, bob], "variables": VENUE},
    )
    message = sent.json()["id"]
    first = await client.post(f"/v1/messages/{message}/cancel")
    assert first.status_code == 200, first.text
    assert first.json() == {
        "id": message,
        "status": "cancelled",
        "cancelled": 2,
        "not_cancelled": 0,
    }
    return message, await snapshot(client), await client.post(f"/v1/messages/{message}/cancel")


async def test_cancelling_twice_reports_nothing_more_cancelled(database_url: str) -> None:
    """A repeat cancel is a 200 reporting 0 cancelled, an unknown message a 404; no change."""
    async with api_client(database_url) as client:
        message, before, second = await _cancel_twice(client)
        assert second.status_code == 200, second.text
        assert second.json()["status"] == "cancelled"
        assert second.json()["cancelled"] == 0
        assert await snapshot(client) == before
        assert before["deliveries"][message] == {"cancelled": 2}
        for bad in (unknown("msg"), "msg_123", unknown("ct")):
            response = await client.post(f"/v1/messages/{bad}/cancel")
            assert_problem(response, 404, slug="not-found")
        assert await snapshot(client) == before


async def test_cancelling_twice_reports_no_delivery_as_not_cancelled(sqlite_url: str) -> None:
    """A second cancel reports `not_cancelled: 0` like the first: every delivery is cancelled."""
    async with api_client(sqlite_url) as client:
        _, _, second = await _cancel_twice(client)
        assert second.json()["not_cancelled"] == 0
