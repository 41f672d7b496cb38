"""Template management: categories, clone, bulk changes, export and import, usage counts,
locale variants, Babel formatting and the render preview, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from sqlalchemy import update

from guestcomms.app import create_worker
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.organizations.models import Organization
from tests.support import (
    create_contact,
    create_key,
    create_template,
    make_settings,
    running_app,
)

PROBLEM = "application/problem+json"
NNBSP = "\u202f"

INVITATION: dict[str, Any] = {
    "name": "invitation",
    "category": "invitations",
    "subject": "You're invited, {{ first_name }}!",
    "html": "<p>Dear {{ first_name }}, join us on {{ day|format_date('long') }}.</p>",
    "text": "Dear {{ first_name }}, join us on {{ day|format_date('long') }}.",
    "variables": ["day"],
    "channel_content": {"sms": {"body": "{{ first_name }}: {{ day|format_date }}"}},
    "locales": {
        "fr": {
            "subject": "Vous êtes invité, {{ first_name }} !",
            "text": "Cher {{ first_name }}, rejoignez-nous le {{ day|format_date('long') }}.",
            "channel_content": {"sms": {"body": "{{ first_name }} : {{ day|format_date }}"}},
        },
        "es": {"subject": "¡Estás invitado, {{ first_name }}!", "text": "Hola {{ first_name }}"},
    },
}
REMINDER: dict[str, Any] = {
    "name": "reminder",
    "category": "reminders",
    "channel": "inapp",
    "channel_content": {
        "inapp": {"title": "Reminder", "body": "See you soon, {{ first_name }}", "url": None}
    },
}
THANKS: dict[str, Any] = {
    "name": "thanks",
    "subject": "Thank you",
    "text": "Thanks for coming, {{ first_name }}.",
}


@contextlib.asynccontextmanager
async def org_client(database_url: str, name: str = "Org") -> AsyncIterator[httpx.AsyncClient]:
    """A client of a fresh organization on a running app."""
    key = await create_key(database_url, name)
    async with running_app(make_settings(database_url)) as api, api.as_key(key) as client:
        yield client


async def _post(client: httpx.AsyncClient, path: str, body: Any, code: int = 201) -> Any:
    response = await client.post(path, json=body)
    assert response.status_code == code, response.text
    return response.json()


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == PROBLEM
    body: dict[str, Any] = response.json()
    return body


async def _names(client: httpx.AsyncClient, **params: Any) -> list[str]:
    response = await client.get("/v1/templates", params=params)
    assert response.status_code == 200, response.text
    return [t["name"] for t in response.json()["items"]]


async def _export(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/templates/export", params=params)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


async def _seed(client: httpx.AsyncClient) -> dict[str, str]:
    """Three templates, the invitation with two versions."""
    ids = {}
    for body in (INVITATION, REMINDER, THANKS):
        ids[body["name"]] = (await _post(client, "/v1/templates", body))["id"]
    second = {
        k: INVITATION[k] for k in ("subject", "text", "variables", "channel_content", "locales")
    }
    second["html"] = "<p>Dear {{ first_name }}, see you on {{ day|format_date('full') }}.</p>"
    await _post(client, f"/v1/templates/{ids['invitation']}/versions", second)
    return ids


def _without_time(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != "exported_at"}


async def test_import_of_an_export_reproduces_the_templates(database_url: str) -> None:
    """Exported from one organization and imported into a fresh one, the templates come out
    identical (names, categories, every version's content and locales)."""
    async with org_client(database_url, "Source") as source:
        await _seed(source)
        exported = await _export(source)
    assert exported["format"] == "guestcomms.templates"
    assert exported["format_version"] == 1
    assert [t["name"] for t in exported["templates"]] == ["invitation", "reminder", "thanks"]
    invitation = exported["templates"][0]
    assert [v["version"] for v in invitation["versions"]] == [1, 2]
    assert invitation["category"] == "invitations"
    assert set(invitation["versions"][1]["locales"]) == {"fr", "es"}

    async with org_client(database_url, "Target") as target:
        result = await _post(target, "/v1/templates/import", exported, 200)
        assert [(i["name"], i["action"], i["latest_version"]) for i in result["items"]] == [
            ("invitation", "created", 2),
            ("reminder", "created", 1),
            ("thanks", "created", 1),
        ]
        assert _without_time(await _export(target)) == _without_time(exported)
        # importing the same document again changes nothing
        again = await _post(target, "/v1/templates/import", exported, 200)
        assert {i["action"] for i in again["items"]} == {"unchanged"}
        assert _without_time(await _export(target)) == _without_time(exported)


async def test_import_modes_for_existing_names(database_url: str) -> None:
    """merge adds a version only when the content differs; new_version always; skip never."""
    async with org_client(database_url) as client:
        ids = await _seed(client)
        document = await _export(client, ids=ids["thanks"])
        assert [t["name"] for t in document["templates"]] == ["thanks"]
        document["templates"][0]["versions"][-1]["text"] = "Merci, {{ first_name }}."
        document["templates"][0]["category"] = "ignored for an existing template"

        skipped = await _post(client, "/v1/templates/import?mode=skip", document, 200)
        assert skipped["items"][0]["action"] == "skipped"
        merged = await _post(client, "/v1/templates/import", document, 200)
        assert (merged["items"][0]["action"], merged["items"][0]["latest_version"]) == (
            "new_version",
            2,
        )
        unchanged = await _post(client, "/v1/templates/import?mode=merge", document, 200)
        assert unchanged["items"][0]["action"] == "unchanged"
        forced = await _post(client, "/v1/templates/import?mode=new_version", document, 200)
        assert forced["items"][0]["latest_version"] == 3
        thanks = (await client.get(f"/v1/templates/{ids['thanks']}")).json()
        assert thanks["latest"]["text"] == "Merci, {{ first_name }}."
        assert thanks["category"] is None


async def test_import_rejects_an_unknown_variable_naming_it(database_url: str) -> None:
    """A version using an undeclared variable is a 422 naming the template, the version and
    the variable, and nothing of the document is imported."""
    async with org_client(database_url, "Source") as source:
        await _seed(source)
        document = await _export(source)
    bad = document["templates"][0]["versions"][1]
    bad["html"] = "<p>{{ first_name }}, meet us at {{ venue }}.</p>"
    async with org_client(database_url, "Target") as target:
        problem = _problem(await target.post("/v1/templates/import", json=document), 422)
        assert problem["type"] == "/problems/template-error"
        assert problem["field"] == "templates[0].versions[1].html"
        assert "'invitation'" in problem["detail"]
        assert "version 2" in problem["detail"]
        assert "'venue'" in problem["detail"]
        assert problem["line"] == 1
        assert await _names(target) == []

        document["templates"][0]["versions"][1]["html"] = "<p>ok</p>"
        document["templates"][2]["name"] = "invitation"
        problem = _problem(await target.post("/v1/templates/import", json=document), 422)
        assert problem["field"] == "templates[2].name"
        document["format_version"] = 2
        problem = _problem(await target.post("/v1/templates/import", json=document), 422)
        assert problem["field"] == "format_version"
        assert await _names(target) == []


async def test_bulk_is_all_or_nothing(database_url: str) -> None:
    """One bad item anywhere fails the whole request with a 422 naming it; a good request
    deletes, updates and creates together."""
    async with org_client(database_url) as client:
        ids = await _seed(client)
        before = await _export(client)
        request: dict[str, Any] = {
            "delete": [ids["reminder"]],
            "update": [{"id": ids["thanks"], "name": "merci", "category": "after"}],
            "create": [
                {**THANKS, "name": "reminder", "category": "reminders"},
                {**THANKS, "name": "broken", "text": "{{ first_name }} {{ nope }}"},
            ],
        }
        problem = _problem(await client.post("/v1/templates/bulk", json=request), 422)
        assert problem["field"] == "create[1].text"
        assert "'nope'" in problem["detail"]
        assert _without_time(await _export(client)) == _without_time(before)

        # the failure comes late, after deletes and updates ran: they are rolled back too
        request["create"][1] = {**THANKS, "name": "invitation"}
        problem = _problem(await client.post("/v1/templates/bulk", json=request), 409)
        assert problem["field"] == "create[1].name"
        assert _without_time(await _export(client)) == _without_time(before)

        request["create"].pop()
        request["update"][0]["content"] = {"subject": "Merci", "text": "Merci {{ first_name }}"}
        result = await _post(client, "/v1/templates/bulk", request, 200)
        assert result["deleted"] == [ids["reminder"]]
        assert [(t["name"], t["category"], t["latest_version"]) for t in result["updated"]] == [
            ("merci", "after", 2)
        ]
        assert [t["name"] for t in result["created"]] == ["reminder"]
        assert result["created"][0]["id"] != ids["reminder"]
        assert sorted(await _names(client)) == ["invitation", "merci", "reminder"]


async def test_bulk_errors_name_the_item(database_url: str) -> None:
    """Unknown or repeated ids, a rename onto a taken name, and deleting a template that
    messages used are each refused, naming the item."""
    async with org_client(database_url) as client:
        ids = await _seed(client)
        contact = await create_contact(client, email="ana@example.com", first_name="Ana")
        await _post(
            client,
            "/v1/messages",
            {"template_id": ids["thanks"], "contact_ids": [contact]},
            202,
        )
        ghost = "tpl_" + "0" * 32
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({"delete": [ids["reminder"], ghost]}, 422, "delete[1]"),
            ({"delete": [ids["reminder"], ids["reminder"]]}, 422, "delete[1]"),
            ({"delete": ["ct_123"]}, 422, "delete[0]"),
            ({"update": [{"id": ghost}]}, 422, "update[0].id"),
            ({"update": [{"id": ids["reminder"], "name": "thanks"}]}, 409, "update[0].name"),
            (
                {"update": [{"id": ids["thanks"], "content": {"subject": "x", "text": "{{ a }}"}}]},
                422,
                "update[0].content.text",
            ),
            ({"delete": [ids["thanks"]]}, 409, "delete[0]"),
            ({"delete": [ids["thanks"]], "update": [{"id": ids["thanks"]}]}, 422, "update[0].id"),
        ]
        for request, status, field in cases:
            problem = _problem(await client.post("/v1/templates/bulk", json=request), status)
            assert problem["field"] == field, (request, problem)
        assert sorted(await _names(client)) == ["invitation", "reminder", "thanks"]
        # a rename swap through a freed name works: deletes run first
        swap = {
            "delete": [ids["reminder"]],
            "update": [{"id": ids["invitation"], "name": "reminder"}],
        }
        await _post(client, "/v1/templates/bulk", swap, 200)
        assert sorted(await _names(client)) == ["reminder", "thanks"]


async def test_clone_copies_a_version_into_a_new_template(database_url: str) -> None:
    """The clone's version 1 is the source's latest (or ?version=N); the category is the
    source's unless given; a taken name is a 409 and an unknown version a 404."""
    async with org_client(database_url) as client:
        ids = await _seed(client)
        source = (await client.get(f"/v1/templates/{ids['invitation']}")).json()
        clone = await _post(client, f"/v1/templates/{ids['invitation']}/clone", {"name": "copy"})
        assert (clone["name"], clone["category"], clone["latest_version"]) == (
            "copy",
            "invitations",
            1,
        )
        assert clone["id"] != source["id"]
        assert clone["latest"]["id"] != source["latest"]["id"]
        content = ("subject", "html", "text", "variables", "channel_content", "locales")
        assert {k: clone["latest"][k] for k in content} == {k: source["latest"][k] for k in content}

        first = (await client.get(f"/v1/templates/{ids['invitation']}/versions/1")).json()
        old = await _post(
            client,
            f"/v1/templates/{ids['invitation']}/clone?version=1",
            {"name": "old copy", "category": None},
        )
        assert old["category"] is None
        assert old["latest"]["html"] == first["html"] != source["latest"]["html"]

        taken = await client.post(f"/v1/templates/{ids['thanks']}/clone", json={"name": "copy"})
        assert _problem(taken, 409)["field"] == "name"
        missing = await client.post(
            f"/v1/templates/{ids['thanks']}/clone?version=9", json={"name": "x"}
        )
        assert _problem(missing, 404)["field"] == "version"


async def test_categories_filter_the_list(database_url: str) -> None:
    """?category= lists only that category; PATCH moves a template and null clears it."""
    async with org_client(database_url) as client:
        ids = await _seed(client)
        assert await _names(client, category="invitations") == ["invitation"]
        assert await _names(client, category="nothing") == []
        assert len(await _names(client)) == 3
        response = await client.patch(
            f"/v1/templates/{ids['thanks']}", json={"category": "invitations"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["latest_version"] == 1
        assert await _names(client, category="invitations") == ["invitation", "thanks"]
        response = await client.patch(f"/v1/templates/{ids['invitation']}", json={"category": None})
        assert response.json()["category"] is None
        assert await _names(client, category="invitations") == ["thanks"]
        exported = await _export(client, category="invitations")
        assert [t["name"] for t in exported["templates"]] == ["thanks"]
        taken = await client.patch(f"/v1/templates/{ids['thanks']}", json={"name": "reminder"})
        assert _problem(taken, 409)["field"] == "name"


async def _send(client: httpx.AsyncClient, template: str, contacts: list[str], **extra: Any) -> str:
    body = {"template_id": template, "contact_ids": contacts, **extra}
    message_id: str = (await _post(client, "/v1/messages", body, 202))["id"]
    return message_id


async def test_usage_counts_deliveries_per_version_and_status(database_url: str) -> None:
    """Each version counts the deliveries it produced, by their status after sending."""
    settings = make_settings(database_url)
    key = await create_key(database_url, "Org")
    async with running_app(settings) as api, api.as_key(key) as client:
        template = await create_template(client)
        ana = await create_contact(client, email="ana@example.com", first_name="Ana")
        pat = await create_contact(client, phone="+447911123456", first_name="Pat")  # no email
        await _send(client, template, [ana, pat], variables={"venue": "Como"})
        await _post(
            client,
            f"/v1/templates/{template}/versions",
            {"subject": "Hi {{ first_name }}", "text": "Hello", "variables": []},
        )
        await _send(client, template, [ana])
        await _post(
            client,
            f"/v1/templates/{template}/versions",
            {"subject": "Unused", "text": "Never sent", "variables": []},
        )
        queued = (await client.get(f"/v1/templates/{template}/usage")).json()
        assert [v["by_status"] for v in queued["versions"]] == [{"queued": 2}, {"queued": 1}, {}]
        async with create_worker(settings) as worker:
            assert await worker.run_until_idle() == 3
        usage = (await client.get(f"/v1/templates/{template}/usage")).json()
    assert usage["template_id"] == template
    assert usage["deliveries"] == 3
    assert [(v["version"], v["deliveries"], v["by_status"]) for v in usage["versions"]] == [
        (1, 2, {"failed": 1, "sent": 1}),
        (2, 1, {"sent": 1}),
        (3, 0, {}),
    ]
    assert all(v["id"].startswith("tv_") for v in usage["versions"])


async def _set_org_locale(database_url: str, name: str, locale: str) -> None:
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            await session.execute(
                update(Organization).where(Organization.name == name).values(locale=locale)
            )
    finally:
        await engine.dispose()


async def test_locale_variant_falls_back_to_language_then_organization(database_url: str) -> None:
    """fr-CA gets the fr variant, de the base; once the organization's default is es, de gets
    es; dates are formatted in the contact's own locale."""
    settings = make_settings(database_url)
    key = await create_key(database_url, "Locales")
    async with running_app(settings) as api, api.as_key(key) as client:
        template = (await _post(client, "/v1/templates", INVITATION))["id"]
        guests = {
            name: await create_contact(
                client, email=f"{name}@example.com", phone=phone, first_name=name, locale=locale
            )
            for name, locale, phone in (
                ("Chloe", "fr-CA", "+15145550100"),
                ("Hans", "de", "+4915112345678"),
                ("Amy", "en-US", None),
            )
        }
        day = {"day": "2026-06-01"}
        await _send(client, template, list(guests.values()), variables=day)
        async with create_worker(settings) as worker:
            assert await worker.run_until_idle() == 3
        outbox = {i["recipient"]: i for i in (await client.get("/v1/outbox")).json()["items"]}
        await _set_org_locale(database_url, "Locales", "es-MX")
        await _send(client, template, [guests["Hans"]], variables=day)
        async with create_worker(settings) as worker:
            assert await worker.run_until_idle() == 1
        latest = (await client.get("/v1/outbox")).json()["items"]
        hans_again = [i for i in latest if i["recipient"] == "hans@example.com"]
    assert outbox["chloe@example.com"]["subject"] == "Vous êtes invité, Chloe !"
    assert outbox["chloe@example.com"]["text"] == "Cher Chloe, rejoignez-nous le 1 juin 2026."
    assert outbox["chloe@example.com"]["html"] is None  # the variant replaced the email parts
    assert outbox["hans@example.com"]["subject"] == "You're invited, Hans!"
    assert outbox["hans@example.com"]["text"] == "Dear Hans, join us on 1. Juni 2026."
    assert outbox["amy@example.com"]["text"] == "Dear Amy, join us on June 1, 2026."
    assert sorted(i["subject"] for i in hans_again) == [
        "You're invited, Hans!",
        "¡Estás invitado, Hans!",
    ]


async def test_preview_renders_what_the_worker_sends(database_url: str) -> None:
    """The preview of a contact equals the email the worker then sends them, variant and
    formatting included; other channels and errors are reported as the worker would."""
    settings = make_settings(database_url)
    key = await create_key(database_url, "Preview")
    async with running_app(settings) as api, api.as_key(key) as client:
        template = (await _post(client, "/v1/templates", INVITATION))["id"]
        chloe = await create_contact(
            client,
            email="chloe@example.com",
            phone="+15145550100",
            first_name="Chloe",
            locale="fr-CA",
        )
        amy = await create_contact(
            client, email="amy@example.com", first_name="Amy", locale="en-US"
        )
        preview = await _post(
            client,
            f"/v1/templates/{template}/preview",
            {"contact_id": amy, "variables": {"day": "2026-06-01"}},
            200,
        )
        # without tracking: its pixel and redirects are per delivery, the preview shows the
        # content as rendered (tests/integration/test_tracking.py covers tracked emails)
        await _send(client, template, [amy], variables={"day": "2026-06-01"}, tracking=False)
        async with create_worker(settings) as worker:
            assert await worker.run_until_idle() == 1
        sent = (await client.get("/v1/outbox")).json()["items"][0]
        assert (preview["subject"], preview["html"], preview["text"]) == (
            sent["subject"],
            sent["html"],
            sent["text"],
        )
        assert (preview["variant"], preview["locale"], preview["version"]) == (None, "en-US", 1)

        sms = await _post(
            client,
            f"/v1/templates/{template}/preview",
            {"contact_id": chloe, "variables": {"day": "2026-06-01"}, "channel": "sms"},
            200,
        )
        assert (sms["channel"], sms["variant"], sms["locale"]) == ("sms", "fr", "fr-CA")
        assert sms["body"] == "Chloe : 1 juin 2026"
        assert sms["subject"] is None

        url = f"/v1/templates/{template}/preview"
        failures: list[tuple[dict[str, Any], int, str | None]] = [
            ({"contact_id": "ct_" + "0" * 32}, 422, "contact_id"),
            ({"contact_id": "nonsense"}, 422, "contact_id"),
            ({"contact_id": amy, "variables": {"venue": "x", "day": "x"}}, 422, "variables.venue"),
            ({"contact_id": amy, "version": 4}, 404, "version"),
            ({"contact_id": amy, "channel": "push"}, 422, "channel"),
            ({"contact_id": amy, "channel": "sms", "variables": {"day": "1"}}, 422, None),
        ]
        for body, status, field in failures:
            problem = _problem(await client.post(url, json=body), status)
            assert problem.get("field") == field, (body, problem)
        missing_day = _problem(await client.post(url, json={"contact_id": amy}), 422)
        assert missing_day["type"] == "/problems/template-render-error"
        assert "'day' is undefined" in missing_day["detail"]
        bad_day = _problem(
            await client.post(url, json={"contact_id": amy, "variables": {"day": "soon"}}), 422
        )
        assert "format_date: 'soon' is not a date" in bad_day["detail"]
        assert len((await client.get("/v1/outbox")).json()["items"]) == 1  # nothing sent


async def test_template_routes_refuse_another_organizations_ids(database_url: str) -> None:
    """Bulk, export, clone, usage and preview never reach another organization's templates
    or contacts, and import only ever writes the caller's."""
    key_a = await create_key(database_url, "A")
    key_b = await create_key(database_url, "B")
    async with (
        running_app(make_settings(database_url)) as api,
        api.as_key(key_a) as a,
        api.as_key(key_b) as b,
    ):
        mine = await _seed(a)
        theirs = await _seed(b)
        their_contact = await create_contact(b, email="b@example.com", first_name="B")
        before = await _export(b)
        for request, field in (
            ({"delete": [theirs["thanks"]]}, "delete[0]"),
            ({"update": [{"id": theirs["thanks"], "name": "mine"}]}, "update[0].id"),
        ):
            problem = _problem(await a.post("/v1/templates/bulk", json=request), 422)
            assert problem["field"] == field
        problem = _problem(
            await a.get("/v1/templates/export", params={"ids": theirs["thanks"]}), 404
        )
        assert problem["field"] == "ids[0]"
        preview = await a.post(
            f"/v1/templates/{mine['thanks']}/preview", json={"contact_id": their_contact}
        )
        assert _problem(preview, 422)["field"] == "contact_id"
        exported = await _export(a, ids=f"{mine['thanks']},{mine['reminder']}")
        assert [t["name"] for t in exported["templates"]] == ["reminder", "thanks"]
        imported = await _post(a, "/v1/templates/import?mode=new_version", before, 200)
        assert {i["action"] for i in imported["items"]} == {"new_version"}
        assert set(await _names(a)) == {"invitation", "reminder", "thanks"}
        assert _without_time(await _export(b)) == _without_time(before)


async def test_preview_of_a_message_about_an_event(database_url: str) -> None:
    """With event_id the preview sees `event` and `guest` as the worker would, and formats the
    event's date in the contact's locale; another organization's event is refused."""
    key = await create_key(database_url, "Events")
    other = await create_key(database_url, "Other")
    async with (
        running_app(make_settings(database_url)) as api,
        api.as_key(key) as client,
        api.as_key(other) as stranger,
    ):
        event = await _post(
            client,
            "/v1/events",
            {"name": "Ana & Ben", "date": "2026-06-20", "timezone": "Europe/Lisbon"},
        )
        foreign = await _post(
            stranger,
            "/v1/events",
            {"name": "Elsewhere", "date": "2026-07-01", "timezone": "UTC"},
        )
        template = await _post(
            client,
            "/v1/templates",
            {
                "name": "save-the-date",
                "subject": "{{ event.name }}",
                "text": "{{ event.date|format_date('long') }}",
            },
        )
        chloe = await create_contact(
            client, email="chloe@example.com", first_name="Chloe", locale="fr-CA"
        )
        url = f"/v1/templates/{template['id']}/preview"
        preview = await _post(client, url, {"contact_id": chloe, "event_id": event["id"]}, 200)
        assert (preview["subject"], preview["text"]) == ("Ana & Ben", "20 juin 2026")
        without = _problem(await client.post(url, json={"contact_id": chloe}), 422)
        assert "'event' is undefined" in without["detail"]
        refused = await client.post(url, json={"contact_id": chloe, "event_id": foreign["id"]})
        assert _problem(refused, 422)["field"] == "event_id"
