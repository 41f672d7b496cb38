"""API keys: scopes enforced per route, keys shown once and stored hashed, revocation, a cheap
``last_used_at``, and per-key rate limits (429 with ``Retry-After``) in memory and on Redis.

The Redis test skips when no Redis answers, unless ``GUESTCOMMS_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import select, update
from structlog.testing import capture_logs

from guestcomms.api.ratelimit import ApiRateLimiter
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.domain.clock import utc_now
from guestcomms.errors import TooManyRequestsError
from guestcomms.organizations.models import ApiKey
from tests.integration.test_tenancy import ROUTES_WITH_IDS, SIGNED_ROUTES, _app_routes
from tests.support import Api, create_key, make_settings, running_app

REDIS_HOST = os.environ.get("GUESTCOMMS_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("GUESTCOMMS_TEST_REDIS_PORT", "6379"))
REQUIRE_SERVICES = os.environ.get("GUESTCOMMS_REQUIRE_SERVICES") == "1"
PROBLEM = "application/problem+json"
SEND = {"template_id": f"tpl_{'0' * 32}", "contact_ids": [f"ct_{'0' * 32}"]}

# A body each body-taking route accepts far enough to reach its scope check (FastAPI refuses
# a malformed body with 422 before the route runs). Routes not named here send the body of
# test_tenancy's ROUTES_WITH_IDS, or none.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/contacts"): {"email": "a@example.com"},
    ("POST", "/v1/contacts/import"): {"contacts": [{"email": "a@example.com"}]},
    ("POST", "/v1/audiences"): {"name": "a", "filter": 'tags has "x"'},
    ("POST", "/v1/audiences/preview"): {"filter": 'tags has "x"'},
    ("POST", "/v1/templates"): {"name": "a", "subject": "s", "text": "t"},
    ("POST", "/v1/templates/import"): {
        "format": "guestcomms.templates",
        "format_version": 1,
        "templates": [],
    },
    ("POST", "/v1/templates/bulk"): {},
    ("POST", "/v1/messages"): SEND,
    ("POST", "/v1/providers"): {"name": "a", "kind": "sendgrid", "credentials": {"api_key": "x"}},
    ("PUT", "/v1/routes/{channel}"): {"strategy": "priority_failover"},
    ("POST", "/v1/webhook-endpoints"): {"url": "https://example.com/hooks"},
    ("POST", "/v1/events"): {"name": "a", "date": "2026-06-20", "timezone": "UTC"},
    ("POST", "/v1/campaigns"): {"name": "a", "template_id": f"tpl_{'0' * 32}"},
    ("POST", "/v1/deliveries/cancel"): {"cancellation_key": "a"},
    ("PATCH", "/v1/organization/settings"): {},
    ("POST", "/v1/contacts/{contact_id}/consents"): {
        "channel": "email",
        "purpose": "marketing",
        "granted": True,
        "source": "test",
    },
    ("POST", "/v1/suppressions"): {"channel": "email", "address": "a@example.com"},
    ("POST", "/v1/keys"): {"scopes": ["admin"]},
}

# Authenticated routes any valid key may call (none today): named here with the reason.
OPEN_TO_ANY_KEY: frozenset[tuple[str, str]] = frozenset()

PATH_VALUES = {"number": "1", "channel": "email", "provider": "sendgrid"}


def _fill_path(path: str) -> str:
    """``path`` with every parameter replaced: a well-formed value, or an id of nothing."""
    out = path
    while "{" in out:
        start, end = out.index("{"), out.index("}")
        name = out[start + 1 : end]
        out = out[:start] + PATH_VALUES.get(name, f"x_{'0' * 32}") + out[end + 1 :]
    return out


@contextlib.asynccontextmanager
async def app_with(database_url: str, **overrides: Any) -> AsyncIterator[Api]:
    """The app on ``database_url`` with ``overrides`` to the test settings."""
    async with running_app(make_settings(database_url, **overrides)) as api:
        yield api


async def _key_row(database_url: str, prefix: str) -> ApiKey:
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session:
            key = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
            assert key is not None
            return key
    finally:
        await engine.dispose()


async def test_key_without_messages_send_gets_403_on_send(database_url: str) -> None:
    """A key with every scope but ``messages:send`` is refused the send with a 403 problem."""
    key = await create_key(database_url, "Org A", scopes=("messages:read", "contacts:write"))
    async with app_with(database_url) as api, api.as_key(key) as client:
        response = await client.post("/v1/messages", json=SEND)
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].split(";")[0] == PROBLEM
    assert response.json()["type"] == "/problems/forbidden"
    assert "messages:send" in response.json()["detail"]


async def test_every_authenticated_route_refuses_a_key_without_scopes(sqlite_url: str) -> None:
    """Every route that takes an API key answers 403 to a key with no scopes at all."""
    key = await create_key(sqlite_url, "Org A", scopes=())
    async with app_with(sqlite_url) as api, api.as_key(key) as client:
        openapi = (await api.client.get("/openapi.json")).json()
        routes = _app_routes(api.app)
        secured = {
            (method.upper(), path)
            for path, item in openapi["paths"].items()
            for method, operation in item.items()
            if operation.get("security")
        }
        assert secured, "the spec marks no route as authenticated"
        assert not secured & SIGNED_ROUTES
        # every /v1 route but the signed ones takes a key, and the spec says so
        v1 = {(m, p) for m, p in routes if p.startswith("/v1")} - SIGNED_ROUTES
        assert v1 == secured, v1 ^ secured
        allowed: list[tuple[str, str, int, str]] = []
        for method, path in sorted(secured - OPEN_TO_ANY_KEY):
            body = BODIES.get((method, path), ROUTES_WITH_IDS.get((method, path)))
            if isinstance(body, dict):
                body = {k: f"ct_{'0' * 32}" if v == "{contact_id}" else v for k, v in body.items()}
            response = await client.request(method, _fill_path(path), json=body)
            if response.status_code != 403:
                allowed.append((method, path, response.status_code, response.text[:200]))
    # a 422 here means the body did not reach the route: add one to BODIES
    assert not allowed, "\n".join(map(str, allowed))


async def test_keys_are_shown_once_listed_without_secrets_and_revocable(database_url: str) -> None:
    """POST /v1/keys shows the key once; the list never shows it; a revoked key gets a 401."""
    admin = await create_key(database_url, "Org A")
    async with app_with(database_url) as api, api.as_key(admin) as client:
        created = await client.post(
            "/v1/keys", json={"name": "sender", "scopes": ["messages:send"], "rate_limit": 60}
        )
        assert created.status_code == 201, created.text
        body = created.json()
        plaintext = body["key"]
        assert plaintext.startswith(f"gck_{body['prefix']}_")
        assert body["scopes"] == ["messages:send"]
        assert body["rate_limit"] == 60
        listed = await client.get("/v1/keys")
        assert listed.status_code == 200, listed.text
        items = listed.json()["items"]
        assert len(items) == 2
        secret = plaintext.removeprefix(f"gck_{body['prefix']}_")
        assert secret, plaintext
        assert secret not in listed.text  # not the secret...
        row = await _key_row(database_url, body["prefix"])
        assert row.secret_hash not in listed.text  # ...nor its hash
        assert all("key" not in item and "secret_hash" not in item for item in items)
        async with api.as_key(plaintext) as sender:
            assert (await sender.get("/v1/messages")).status_code == 403
            revoked = await client.post(f"/v1/keys/{body['id']}/revoke")
            assert revoked.status_code == 200, revoked.text
            assert revoked.json()["revoked_at"] is not None
            again = await client.post(f"/v1/keys/{body['id']}/revoke")
            assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
            response = await sender.post("/v1/messages", json=SEND)
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["type"] == "/problems/unauthorized"


async def test_key_routes_need_admin_and_refuse_unknown_scopes(sqlite_url: str) -> None:
    """A non-admin key cannot list, make or revoke keys; an unknown scope is a 422."""
    admin = await create_key(sqlite_url, "Org A")
    reader = await create_key(sqlite_url, "Org A", scopes=("messages:read",))
    async with app_with(sqlite_url) as api, api.as_key(admin) as a, api.as_key(reader) as r:
        assert (await r.get("/v1/keys")).status_code == 403
        assert (await r.post("/v1/keys", json={"scopes": ["admin"]})).status_code == 403
        response = await a.post("/v1/keys", json={"scopes": ["messages:sned"]})
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "scopes"
        response = await a.post("/v1/keys", json={"scopes": ["admin"], "secret_hash": "x"})
        assert response.status_code == 422, response.text  # no mass assignment


async def test_last_used_at_is_written_at_most_once_a_minute(sqlite_url: str) -> None:
    """The first request sets last_used_at; the next ones within a minute do not write it."""
    key = await create_key(sqlite_url, "Org A")
    prefix = key.split("_")[1]
    async with app_with(sqlite_url) as api, api.as_key(key) as client:
        assert (await client.get("/v1/keys")).status_code == 200
        first = (await _key_row(sqlite_url, prefix)).last_used_at
        assert first is not None
        for _ in range(3):
            assert (await client.get("/v1/contacts")).status_code == 200
        assert (await _key_row(sqlite_url, prefix)).last_used_at == first
        engine = create_engine(sqlite_url)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                stale = utc_now() - timedelta(minutes=2)
                await session.execute(
                    update(ApiKey).where(ApiKey.prefix == prefix).values(last_used_at=stale)
                )
        finally:
            await engine.dispose()
        assert (await client.get("/v1/contacts")).status_code == 200
        later = (await _key_row(sqlite_url, prefix)).last_used_at
        assert later is not None
        assert later > first - timedelta(seconds=1)


async def test_rate_limit_answers_429_with_retry_after(sqlite_url: str) -> None:
    """Over the server's default per-key limit the key gets 429 problems with Retry-After;
    another key of the same organization is not affected."""
    first = await create_key(sqlite_url, "Org A")
    second = await create_key(sqlite_url, "Org A")
    async with (
        app_with(sqlite_url, api_rate_limit="3/minute") as api,
        api.as_key(first) as a,
        api.as_key(second) as b,
    ):
        statuses = [(await a.get("/v1/contacts")).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        response = await a.get("/v1/contacts")
        assert response.status_code == 429, response.text
        assert response.headers["content-type"].split(";")[0] == PROBLEM
        assert response.json()["type"] == "/problems/rate-limited"
        assert 1 <= int(response.headers["retry-after"]) <= 60
        assert (await b.get("/v1/contacts")).status_code == 200
        # a wrong key is a 401, never counted against anyone
        async with api.as_key(first[:-2] + "xx") as wrong:
            assert (await wrong.get("/v1/contacts")).status_code == 401


async def test_a_keys_own_rate_limit_overrides_the_default(sqlite_url: str) -> None:
    """A key made with rate_limit=2 gets its third request of the minute refused."""
    admin = await create_key(sqlite_url, "Org A")
    async with app_with(sqlite_url) as api, api.as_key(admin) as client:
        made = await client.post("/v1/keys", json={"scopes": ["contacts:read"], "rate_limit": 2})
        assert made.status_code == 201, made.text
        async with api.as_key(made.json()["key"]) as limited:
            statuses = [(await limited.get("/v1/contacts")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def _redis_up() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix unique to this test; its Redis keys are deleted afterwards."""
    if not _redis_up():
        if REQUIRE_SERVICES:
            pytest.fail(f"Redis is required but not reachable at {REDIS_HOST}:{REDIS_PORT}")
        pytest.skip(f"no Redis at {REDIS_HOST}:{REDIS_PORT}")
    prefix = f"guestcomms:test:{uuid.uuid4().hex}"
    yield prefix
    client = Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def test_redis_rate_limit_is_shared_between_processes(redis_prefix: str) -> None:
    """Two limiters on one Redis (two API processes) share each key's count."""
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
    limiters = [
        ApiRateLimiter.build(default_limit="3/minute", redis_url=url, key_prefix=redis_prefix)
        for _ in range(2)
    ]
    key_id = uuid.uuid4()
    await limiters[0].hit(key_id, per_minute=None)
    await limiters[1].hit(key_id, per_minute=None)
    await limiters[0].hit(key_id, per_minute=None)
    with pytest.raises(TooManyRequestsError) as caught:
        await limiters[1].hit(key_id, per_minute=None)
    assert 1 <= caught.value.retry_after_seconds <= 60
    await limiters[1].hit(uuid.uuid4(), per_minute=None)  # another key has its own count
    client = Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        assert [k async for k in client.scan_iter(match=f"{redis_prefix}*")]
    finally:
        await client.aclose()
        for limiter in limiters:
            await limiter.close()


async def test_app_counts_in_redis_when_configured(sqlite_url: str, redis_prefix: str) -> None:
    """With redis_url set, the API's 429 comes from the shared count (two apps, one limit)."""
    key = await create_key(sqlite_url, "Org A")
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
    overrides = {"redis_url": url, "api_rate_limit": "2/minute"}
    async with app_with(sqlite_url, **overrides) as one, app_with(sqlite_url, **overrides) as two:
        # both apps count under this test's prefix, so other runs' counts do not interfere
        for api in (one, two):
            limiter = ApiRateLimiter.build(
                default_limit="2/minute", redis_url=url, key_prefix=redis_prefix
            )
            assert api.app.state.runtime.api_limiter is not None
            await api.app.state.runtime.api_limiter.close()
            api.app.state.runtime.api_limiter = limiter
        async with one.as_key(key) as a, two.as_key(key) as b:
            statuses = [
                (await a.get("/v1/contacts")).status_code,
                (await b.get("/v1/contacts")).status_code,
                (await a.get("/v1/contacts")).status_code,
            ]
    assert statuses == [200, 200, 429]


async def test_unreachable_redis_lets_requests_through(sqlite_url: str) -> None:
    """A rate limit store that does not answer does not take the API down (fail open)."""
    key = await create_key(sqlite_url, "Org A")
    dead = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    async with app_with(sqlite_url, redis_url=dead) as api, api.as_key(key) as client:
        with capture_logs() as logs:
            response = await client.get("/v1/contacts")
    assert response.status_code == 200, response.text
    assert any(entry["event"] == "api.rate_limit_unavailable" for entry in logs)
