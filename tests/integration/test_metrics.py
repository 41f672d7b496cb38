"""Prometheus metrics: ``GET /metrics`` counts the worker's deliveries by channel, provider and
outcome and its provider latencies, reports breakers and the queue's depth and age, and asks
for the metrics token when one is set; ``guestcomms worker`` serves its own on a port."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families

from guestcomms.app import create_worker
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.domain.clock import utc_now
from guestcomms.engine.metrics import serve_metrics
from tests.smtp_server import free_port
from tests.support import (
    create_contact,
    create_key,
    create_template,
    make_settings,
    running_app,
    seed_deliveries,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _samples(text: str) -> Samples:
    """Every sample of an exposition, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_metrics_count_sends_latency_queue_and_breakers(database_url: str) -> None:
    """After N emails go out through the embedded worker to the dev outbox, /metrics shows
    N sent deliveries and N latency observations for email/outbox, the default email route's
    breaker closed, and a future message counted in the queue as scheduled."""
    sends = 3
    settings = make_settings(database_url)
    key = await create_key(database_url, "Metrics")
    async with running_app(settings, embedded_worker=True) as api, api.as_key(key) as client:
        contacts = [
            await create_contact(client, email=f"guest{i}@example.com", first_name=f"G{i}")
            for i in range(sends)
        ]
        template = await create_template(client)
        body = {"template_id": template, "contact_ids": contacts, "variables": {"venue": "Como"}}
        sent = await client.post("/v1/messages", json=body)
        assert sent.status_code == 202, sent.text
        later = (utc_now() + timedelta(days=2)).isoformat()
        scheduled = await client.post(
            "/v1/messages", json={**body, "contact_ids": contacts[:1], "send_at": later}
        )
        assert scheduled.status_code == 202, scheduled.text
        for _ in range(200):
            view = (await client.get(f"/v1/messages/{sent.json()['id']}")).json()
            if all(d["status"] == "sent" for d in view["deliveries"]):
                break
            await asyncio.sleep(0.05)
        response = await api.client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    email = {"channel": "email", "provider": "outbox"}
    assert _value(samples, "guestcomms_deliveries_total", **email, outcome="sent") == sends
    assert _value(samples, "guestcomms_provider_send_seconds_count", **email) == sends
    breaker = {"route": "default:email", "channel": "email", "provider": "outbox"}
    assert _value(samples, "guestcomms_breaker_state", **breaker) == 0
    assert _value(samples, "guestcomms_queue_depth", status="scheduled") == 1
    assert _value(samples, "guestcomms_queue_depth", status="queued") == 0
    assert _value(samples, "guestcomms_queue_depth", status="sending") == 0
    assert _value(samples, "guestcomms_queue_oldest_due_age_seconds") == 0


async def test_queue_age_is_that_of_the_oldest_due_delivery(database_url: str) -> None:
    """With no worker running, seeded due deliveries show as queued, and the queue's age
    grows from their send_at."""
    engine = create_engine(database_url)
    try:
        await seed_deliveries(create_session_factory(engine), count=4)
    finally:
        await engine.dispose()
    await asyncio.sleep(0.05)
    async with running_app(make_settings(database_url)) as api:
        samples = _samples((await api.client.get("/metrics")).text)
    assert _value(samples, "guestcomms_queue_depth", status="queued") == 4
    age = _value(samples, "guestcomms_queue_oldest_due_age_seconds")
    assert age is not None
    assert 0.04 < age < 60


async def test_metrics_token_is_required_when_set(sqlite_url: str) -> None:
    """With metrics_token set, /metrics answers 401 without it, with a wrong one and with an
    API key, and 200 with `Authorization: Bearer <token>`."""
    settings = make_settings(sqlite_url, metrics_token="scrape-me")
    key = await create_key(sqlite_url, "Org")
    async with running_app(settings) as api:
        assert (await api.client.get("/metrics")).status_code == 401
        for wrong in ("Bearer nope", f"Bearer {key}", "scrape-me"):
            response = await api.client.get("/metrics", headers={"Authorization": wrong})
            assert response.status_code == 401, wrong
        assert response.headers["www-authenticate"] == "Bearer"
        ok = await api.client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert ok.status_code == 200, ok.text
    assert "guestcomms_queue_depth" in ok.text


async def test_worker_serves_its_own_metrics_with_the_token(sqlite_url: str) -> None:
    """A separate worker's metrics server (``guestcomms worker`` with metrics_port) shows what
    it sent and its breakers (an open one as 2), behind the same token rule."""
    engine = create_engine(sqlite_url)
    try:
        await seed_deliveries(create_session_factory(engine), count=2)
    finally:
        await engine.dispose()
    settings = make_settings(sqlite_url, breaker_failure_threshold=1)
    async with create_worker(settings) as worker:
        assert await worker.run_until_idle() == 2
        worker.dispatcher.breaker("default:email").record_failure(worker.dispatcher.clock())
        port = free_port()
        server, thread = serve_metrics(
            worker.dispatcher.metrics, host="127.0.0.1", port=port, token="tok"
        )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                refused = await client.get("/metrics")
                response = await client.get("/metrics", headers={"Authorization": "Bearer tok"})
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
    assert refused.status_code == 401
    assert response.status_code == 200, response.text
    samples = _samples(response.text)
    email = {"channel": "email", "provider": "outbox"}
    assert _value(samples, "guestcomms_deliveries_total", **email, outcome="sent") == 2
    breaker = {"route": "default:email", "channel": "email", "provider": "outbox"}
    assert _value(samples, "guestcomms_breaker_state", **breaker) == 2
    assert "guestcomms_queue_depth" not in response.text  # the API reports the queue
