"""Composition root: every dependency is built here, from settings, and nowhere else.

``create_app`` builds the HTTP API; ``create_worker`` builds the send loop; ``build_providers``
picks the providers. Nothing does I/O at import time. ``guestcomms serve`` runs both in one
process (the embedded default); production runs ``api`` and ``worker`` processes separately.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from guestcomms import __version__
from guestcomms.analytics import routes as analytics_routes
from guestcomms.analytics.rollup import RollupRunner
from guestcomms.api import health
from guestcomms.api import metrics as metrics_routes
from guestcomms.api.limits import BodySizeLimitMiddleware
from guestcomms.api.problems import install_problem_handlers
from guestcomms.api.ratelimit import ApiRateLimiter
from guestcomms.api.runtime import Runtime
from guestcomms.audiences import routes as audiences_routes
from guestcomms.audit import routes as audit_routes
from guestcomms.campaigns import live as campaigns_live
from guestcomms.campaigns import routes as campaigns_routes
from guestcomms.campaigns.fanout import FanoutRunner
from guestcomms.channels.base import Provider
from guestcomms.channels.inapp import NOTIFY_CHANNEL as INBOX_NOTIFY_CHANNEL
from guestcomms.channels.inapp import InAppProvider, InboxBroker
from guestcomms.channels.outbox import OutboxProvider
from guestcomms.channels.smtp import SmtpProvider
from guestcomms.channels.webhook import WebhookProvider
from guestcomms.compliance import routes as compliance_routes
from guestcomms.compliance.unsubscribe import UnsubscribeLinks
from guestcomms.config import Settings
from guestcomms.contacts import routes as contacts_routes
from guestcomms.db.engine import create_session_factory, engine_for
from guestcomms.db.notify import listen, listen_for_wakeups
from guestcomms.domain.breaker import BreakerConfig
from guestcomms.domain.enums import Channel
from guestcomms.domain.quiet_hours import SendingWindow
from guestcomms.domain.retry import RetryPolicy
from guestcomms.engine.composer import Composer, TrackingLinks
from guestcomms.engine.directory import ProviderDirectory
from guestcomms.engine.dispatch import Dispatcher
from guestcomms.engine.metrics import Metrics
from guestcomms.engine.pacing import Pacer
from guestcomms.engine.ratelimit import InProcessRateLimiter, RateLimiter, RedisRateLimiter
from guestcomms.engine.worker import Worker, freeze_startup_objects
from guestcomms.events import routes as events_routes
from guestcomms.inbound import routes as inbound_routes
from guestcomms.inbox import routes as inbox_routes
from guestcomms.messages import delivery_routes
from guestcomms.messages import routes as messages_routes
from guestcomms.organizations import routes as keys_routes
from guestcomms.outbox import routes as outbox_routes
from guestcomms.privacy import routes as privacy_routes
from guestcomms.providers import routes as providers_routes
from guestcomms.security.ssrf import SsrfGuard
from guestcomms.templates import routes as templates_routes
from guestcomms.tracking import routes as tracking_routes
from guestcomms.tracking.recorder import HitRecorder
from guestcomms.tracking.tokens import tracking_key
from guestcomms.web import pages
from guestcomms.webhooks import routes as webhooks_routes


def build_providers(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    *,
    broker: InboxBroker | None = None,
) -> dict[str, Provider[Any]]:
    """The process's default providers, for organizations that configured none: SMTP when a
    host is configured, else the dev outbox; the in-app inbox; signed webhooks."""
    email: Provider[Any]
    if settings.smtp_host:
        email = SmtpProvider.from_settings(settings)
    else:
        email = OutboxProvider(session_factory=sessions)
    inapp = InAppProvider(session_factory=sessions, broker=broker or InboxBroker())
    # webhooks need no account: endpoints and their secrets are registered per organization
    webhook = WebhookProvider(guard=SsrfGuard.from_settings(settings))
    return {Channel.EMAIL.value: email, Channel.INAPP.value: inapp, Channel.WEBHOOK.value: webhook}


def build_rate_limiter(settings: Settings) -> RateLimiter:
    """Provider rate limits shared through Redis when ``redis_url`` is set, else in-process."""
    if settings.redis_url:
        return RedisRateLimiter(redis.asyncio.Redis.from_url(settings.redis_url))
    return InProcessRateLimiter()


def create_worker(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    wake: asyncio.Event | None = None,
    broker: InboxBroker | None = None,
    metrics: Metrics | None = None,
) -> Worker:
    """The send loop, on its own engine unless one is shared (``serve``), counting in
    ``metrics`` (the app's in ``serve``; else its own, ``worker.dispatcher.metrics``).

    Use it as ``async with create_worker(settings) as worker`` (or call ``run``), so its
    providers are started and its connections closed.
    """
    owned = None if engine is not None else engine_for(settings)
    sessions = create_session_factory(engine or owned)  # type: ignore[arg-type]
    return Worker(
        session_factory=sessions,
        dispatcher=Dispatcher(
            directory=ProviderDirectory(
                sessions=sessions,
                defaults=build_providers(settings, sessions, broker=broker),
                guard=SsrfGuard.from_settings(settings),
            ),
            limiter=build_rate_limiter(settings),
            breaker_config=BreakerConfig(
                failure_threshold=settings.breaker_failure_threshold,
                cooldown_seconds=settings.breaker_cooldown_seconds,
            ),
            metrics=metrics,
        ),
        composer=Composer(
            sender=settings.email_from,
            reply_to=settings.email_reply_to,
            message_id_domain=settings.message_id_domain,
            pacer=Pacer(default_window=SendingWindow.parse(settings.quiet_hours)),
            unsubscribe=UnsubscribeLinks.from_settings(settings),
            tracking=TrackingLinks(key=tracking_key(settings), base_url=settings.public_base_url),
        ),
        retry_policy=RetryPolicy(
            max_attempts=settings.max_attempts,
            base_delay_seconds=settings.retry_base_seconds,
            max_delay_seconds=settings.retry_max_seconds,
        ),
        batch_size=settings.batch_size,
        lanes=settings.worker_concurrency,
        lease_seconds=settings.lease_seconds,
        poll_interval_seconds=settings.poll_interval_seconds,
        shutdown_grace_seconds=settings.shutdown_grace_seconds,
        wake=wake,
        owned_engine=owned,
        emergency_lane=settings.emergency_lane,
        fair_share=settings.fair_share,
    )


async def run_worker(worker: Worker, settings: Settings) -> None:
    """Run ``worker`` until it is stopped, woken by PostgreSQL notifications when available,
    with the campaign fan-out beside it (it wakes the worker after every batch it writes)."""
    stop_listening = await listen_for_wakeups(settings.database_url, worker.wake_up)
    fanout = FanoutRunner(
        sessions=worker.sessions,
        batch_size=settings.campaign_batch_size,
        lease_seconds=settings.lease_seconds,
        poll_interval_seconds=settings.poll_interval_seconds,
        on_batch=worker.wake.set,
    )
    rollup = RollupRunner(sessions=worker.sessions)  # analytics' hourly counters

    async def stop_side_runners_with_worker() -> None:
        await worker.wait_stopping()
        fanout.stop()
        rollup.stop()

    stopper = asyncio.create_task(stop_side_runners_with_worker())
    # the worker waits for these before it closes its engine (Worker.attach)
    worker.attach(asyncio.create_task(fanout.run()))
    worker.attach(asyncio.create_task(rollup.run()))
    try:
        await worker.run()
    finally:
        fanout.stop()
        rollup.stop()
        stopper.cancel()
        await asyncio.gather(stopper, return_exceptions=True)
        if stop_listening is not None:
            await stop_listening()


def create_app(settings: Settings, *, embedded_worker: bool = False) -> FastAPI:
    """The HTTP API. With ``embedded_worker`` the app also runs a worker in its lifespan."""
    engine = engine_for(settings)
    sessions = create_session_factory(engine)
    # the open pixel's and click redirect's writes, in batches (tracking/recorder.py)
    hits = HitRecorder(sessions, networks=settings.tracking_machine_networks)
    runtime = Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        inbox=InboxBroker(),
        api_limiter=ApiRateLimiter.build(
            default_limit=settings.api_rate_limit, redis_url=settings.redis_url
        ),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker_task: asyncio.Task[None] | None = None
        worker: Worker | None = None
        if embedded_worker:
            worker = create_worker(
                settings, engine=engine, broker=runtime.inbox, metrics=runtime.metrics
            )
            runtime.wake_workers = worker.wake_up
            runtime.worker_hold = worker.hold
            worker_task = asyncio.create_task(run_worker(worker, settings))
        # in-app items sent by workers in other processes reach this process's streams
        stop_listening = await listen(
            settings.database_url, {INBOX_NOTIFY_CHANNEL: runtime.inbox.publish_notification}
        )
        freeze_startup_objects()  # a full collection no longer stalls requests for ~100 ms
        try:
            yield
        finally:
            await hits.close()  # every hit handed in is written before the engine goes
            if stop_listening is not None:
                await stop_listening()
            if worker is not None and worker_task is not None:
                worker.stop()
                await worker_task
            await engine.dispose()
            if runtime.api_limiter is not None:
                await runtime.api_limiter.close()

    app = FastAPI(
        title="guestcomms",
        version=__version__,
        summary="Guest communications for weddings and events: email today, more channels soon.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_problem_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    for router in (
        health.router,
        metrics_routes.router,
        contacts_routes.router,
        audiences_routes.router,
        events_routes.router,
        templates_routes.router,
        messages_routes.router,
        delivery_routes.router,
        analytics_routes.router,
        campaigns_routes.router,
        campaigns_routes.deliveries_router,
        campaigns_live.router,
        inbound_routes.router,
        providers_routes.router,
        inbox_routes.router,
        webhooks_routes.router,
        outbox_routes.router,
        audit_routes.router,
        compliance_routes.router,
        compliance_routes.unsubscribe_router,
        keys_routes.router,
        privacy_routes.router,
        pages.router,
    ):
        app.include_router(router)
    # ahead of the routers: a pixel is matched first, not after every API route
    app.router.routes[:0] = tracking_routes.routes(key=tracking_key(settings), recorder=hits)
    return app
