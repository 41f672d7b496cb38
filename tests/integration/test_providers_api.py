"""Provider accounts over the API: credentials write-only, settings proven, routes chosen."""

from __future__ import annotations

from sqlalchemy import update

from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.providers.models import ProviderAccount
from tests.support import create_key, make_settings, running_app

SECRET = "SG.very-secret-value"


async def test_credentials_are_stored_but_never_returned(database_url: str) -> None:
    """Create, list and get show credential names only; the secret appears in no response."""
    key = await create_key(database_url, "Org")
    async with running_app(make_settings(database_url)) as api, api.as_key(key) as client:
        created = await client.post(
            "/v1/providers",
            json={
                "name": "sendgrid-main",
                "kind": "sendgrid",
                "credentials": {"api_key": SECRET, "webhook_secret": "pk"},
                "rate_per_second": 50,
            },
        )
        listed = await client.get("/v1/providers")
        one = await client.get(f"/v1/providers/{created.json()['id']}")
        openapi = await client.get("/openapi.json")
    assert created.status_code == 201, created.text
    assert created.json()["channel"] == "email"
    assert created.json()["credential_keys"] == ["api_key", "webhook_secret"]
    assert [p["name"] for p in listed.json()["items"]] == ["sendgrid-main"]
    for response in (created, listed, one):
        assert SECRET not in response.text
        assert '"credentials"' not in response.text
    assert "credentials" not in openapi.json()["components"]["schemas"]["ProviderOut"]["properties"]


async def test_bad_provider_configuration_is_a_422_naming_it(database_url: str) -> None:
    """An unknown kind, a missing setting and a taken name are refused, and nothing is saved."""
    key = await create_key(database_url, "Org")
    async with running_app(make_settings(database_url)) as api, api.as_key(key) as client:
        unknown = await client.post("/v1/providers", json={"name": "x", "kind": "carrier-pigeon"})
        missing = await client.post("/v1/providers", json={"name": "x", "kind": "sendgrid"})
        bad_name = await client.post(
            "/v1/providers", json={"name": "Bad Name!", "kind": "sendgrid"}
        )
        first = await client.post(
            "/v1/providers", json={"name": "x", "kind": "resend", "credentials": {"api_key": "k"}}
        )
        taken = await client.post(
            "/v1/providers", json={"name": "x", "kind": "resend", "credentials": {"api_key": "k"}}
        )
        listed = await client.get("/v1/providers")
    assert (unknown.status_code, unknown.json()["field"]) == (422, "kind")
    assert "carrier-pigeon" in unknown.json()["detail"]
    assert (missing.status_code, missing.json()["field"]) == (422, "settings")
    assert "api_key" in missing.json()["detail"]
    assert (bad_name.status_code, bad_name.json()["field"]) == (422, "name")
    assert first.status_code == 201
    assert (taken.status_code, taken.json()["field"]) == (409, "name")
    assert len(listed.json()["items"]) == 1


async def test_new_credentials_reactivate_a_failing_account(database_url: str) -> None:
    """PATCHing credentials on a credentials_failing account makes it active again."""
    key = await create_key(database_url, "Org")
    async with running_app(make_settings(database_url)) as api, api.as_key(key) as client:
        created = (
            await client.post(
                "/v1/providers",
                json={"name": "pm", "kind": "postmark", "credentials": {"server_token": "old"}},
            )
        ).json()
        engine = create_engine(database_url)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                await session.execute(
                    update(ProviderAccount).values(
                        status="credentials_failing", status_reason="401 from postmark"
                    )
                )
        finally:
            await engine.dispose()
        failing = (await client.get(f"/v1/providers/{created['id']}")).json()
        fixed = await client.patch(
            f"/v1/providers/{created['id']}", json={"credentials": {"server_token": "new"}}
        )
        route = await client.put("/v1/routes/email", json={"strategy": "weighted"})
        bad_route = await client.put("/v1/routes/email", json={"strategy": "coin_flip"})
    assert (failing["status"], failing["status_reason"]) == (
        "credentials_failing",
        "401 from postmark",
    )
    assert fixed.status_code == 200, fixed.text
    assert (fixed.json()["status"], fixed.json()["status_reason"]) == ("active", None)
    assert route.json() == {"channel": "email", "strategy": "weighted"}
    assert bad_route.status_code == 422


async def test_provider_routes_need_their_scope(database_url: str) -> None:
    """A key without providers:write cannot add a provider (403)."""
    key = await create_key(database_url, "Org", scopes=("messages:send",))
    async with running_app(make_settings(database_url)) as api, api.as_key(key) as client:
        response = await client.post(
            "/v1/providers", json={"name": "x", "kind": "resend", "credentials": {"api_key": "k"}}
        )
    assert response.status_code == 403
    assert response.json()["type"] == "/problems/forbidden"
