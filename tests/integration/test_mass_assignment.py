"""Mass assignment: a POST, PUT or PATCH body that sets fields the server owns
(``organization_id``, ``status``, ``created_at``, key hashes...) is refused with 422 naming
each field; and no response of a normal flow carries a secret or a hash."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select

from guestcomms.app import create_app
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.organizations.models import ApiKey
from tests.support import create_contact, create_key, create_template, make_settings, running_app

SERVER_OWNED = {
    "organization_id": f"org_{'0' * 32}",
    "status": "sent",
    "created_at": "2026-01-01T00:00:00Z",
    "secret_hash": "0" * 64,
    "prev_hash": "0" * 64,
}
CHANGING = ("post", "put", "patch")
# bodies that are not ours to shape: a provider's own webhook payload
FOREIGN_BODIES = {"/v1/inbound/{provider}/{organization_id}"}
PATH_VALUES = {"channel": "email", "number": "1"}


def _request_bodies(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, resolved JSON schema) of every changing route that takes a JSON body."""
    spec = app.openapi()
    found = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if method in CHANGING and "application/json" in content:
                found.append((method, path, content["application/json"]["schema"]))
    return found


def _object_schemas(spec: dict[str, Any], schema: dict[str, Any], seen: set[str]) -> list[Any]:
    """Every object schema with declared properties reachable from ``schema``."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return []
        seen.add(name)
        return _object_schemas(spec, spec["components"]["schemas"][name], seen)
    found = [schema] if "properties" in schema else []
    children: list[Any] = [*schema.get("properties", {}).values()]
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        children.extend(schema.get(key, []))
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            children.append(schema[key])
    for child in children:
        found.extend(_object_schemas(spec, child, seen))
    return found


def test_every_request_body_forbids_unknown_fields(sqlite_url: str) -> None:
    """Each model a changing route accepts, and every model nested in it, declares
    ``additionalProperties: false`` in the OpenAPI document (pydantic ``extra="forbid"``)."""
    app = create_app(make_settings(sqlite_url))
    spec = app.openapi()
    bodies = _request_bodies(app)
    assert len(bodies) > 20  # the walk found the routes
    open_models = [
        (method.upper(), path, model.get("title"))
        for method, path, schema in bodies
        for model in _object_schemas(spec, schema, set())
        if model.get("additionalProperties") is not False
    ]
    assert open_models == []


async def test_server_owned_fields_in_a_body_are_refused(sqlite_url: str) -> None:
    """Every changing route with a JSON body answers 422 to server-owned fields, naming each
    one (the body is checked before the route looks up any id, so placeholders will do)."""
    key = await create_key(sqlite_url, "Ana & Ben")
    async with running_app(make_settings(sqlite_url)) as api, api.as_key(key) as client:
        for method, path, _ in _request_bodies(api.app):
            if path in FOREIGN_BODIES:
                continue
            url = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), f"x_{'0' * 32}"), path)
            response = await client.request(method, url, json=SERVER_OWNED)
            assert response.status_code == 422, (method, path, response.text)
            fields = {(e["field"], e["message"]) for e in response.json()["errors"]}
            for name in SERVER_OWNED:
                assert (name, "Extra inputs are not permitted") in fields, (method, path, name)


async def test_a_valid_body_with_one_server_owned_field_changes_nothing(sqlite_url: str) -> None:
    """A contact created with `organization_id`, or patched with `created_at`, is refused
    whole: 422 naming the field, and the contact is as it was; an imported row with `status`
    is refused naming it."""
    key = await create_key(sqlite_url, "Ana & Ben")
    async with running_app(make_settings(sqlite_url)) as api, api.as_key(key) as client:
        refused = await client.post(
            "/v1/contacts", json={"email": "a@example.com", "organization_id": "org_x"}
        )
        contact_id = await create_contact(client, email="b@example.com", first_name="Bea")
        patched = await client.patch(
            f"/v1/contacts/{contact_id}",
            json={"first_name": "Mallory", "created_at": "2000-01-01T00:00:00Z"},
        )
        imported = await client.post(
            "/v1/contacts/import", json=[{"email": "c@example.com", "status": "vip"}]
        )
        after = await client.get(f"/v1/contacts/{contact_id}")
        listed = await client.get("/v1/contacts")
    assert refused.status_code == 422
    assert refused.json()["field"] == "organization_id"
    assert patched.status_code == 422
    assert patched.json()["field"] == "created_at"
    assert after.json()["first_name"] == "Bea"
    # a bulk import keeps its valid rows and refuses the others, each naming its field
    assert imported.json()["created"] == 0
    assert imported.json()["errors"] == [
        {"row": 1, "field": "status", "message": "Extra inputs are not permitted"}
    ]
    assert [c["email"] for c in listed.json()["items"]] == ["b@example.com"]


async def test_no_response_carries_a_secret_or_a_hash(database_url: str) -> None:
    """After creating a contact, a template, a provider with credentials and sending, no
    list or get response contains a key's hash, a credential, or a `*hash*` field."""
    key = await create_key(database_url, "Ana & Ben")
    credential = "SG.very-secret-credential"
    texts: list[str] = []
    async with running_app(make_settings(database_url)) as api, api.as_key(key) as client:
        contact_id = await create_contact(client, email="guest@example.com")
        template_id = await create_template(client)
        provider = await client.post(
            "/v1/providers",
            json={
                "name": "sendgrid-main",
                "kind": "sendgrid",
                "credentials": {"api_key": credential},
            },
        )
        assert provider.status_code == 201, provider.text
        sent = await client.post(
            "/v1/messages",
            json={
                "template_id": template_id,
                "contact_id": contact_id,
                "variables": {"venue": "X"},
            },
        )
        texts += [provider.text, sent.text]
        urls = [
            "/v1/contacts",
            f"/v1/contacts/{contact_id}",
            "/v1/templates",
            f"/v1/templates/{template_id}",
            "/v1/templates/export",
            "/v1/providers",
            f"/v1/providers/{provider.json()['id']}",
            "/v1/messages",
            "/v1/deliveries",
            "/v1/campaigns",
            "/v1/events",
            "/v1/audiences",
            "/v1/webhook-endpoints",
            "/v1/outbox",
        ]
        for url in urls:
            response = await client.get(url)
            assert response.status_code == 200, (url, response.text)
            texts.append(response.text)
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session:
            stored_hash = (await session.scalars(select(ApiKey.secret_hash))).one()
    finally:
        await engine.dispose()
    secret = key.split("_", 2)[2]  # gck_<prefix>_<secret>; the secret itself may hold "_"
    for text in texts:
        assert stored_hash not in text
        assert secret not in text
        assert hashlib.sha256(secret.encode()).hexdigest() not in text
        assert credential not in text
        assert not [name for name in _keys(json.loads(text)) if "hash" in name or name == "secret"]


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(k for v in value.values() for k in _keys(v))]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []
