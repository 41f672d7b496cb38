"""Prometheus metrics of one process: what its worker sent, how long providers took, the state
of its breakers, and (read from the database when scraped) the queue's depth and age.

Everything lives on one ``CollectorRegistry`` per :class:`Metrics` (never the global default
registry), so a test process can build many apps and workers. ``create_app`` makes one and
hands it to its embedded worker (``serve``), so ``GET /metrics`` shows both; ``guestcomms
worker`` makes its own and serves it with :func:`serve_metrics` on ``metrics_port``.

Counters and histograms count what this process did since it started (Prometheus sums them
over processes); breaker states are this process's breakers. Queue depth and age are facts
of the shared database, so only the API reports them (:meth:`Metrics.refresh_queue`), with
three cheap queries per scrape. The names and labels are listed in docs/operations.md.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector
from sqlalchemy import func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.domain.breaker import BreakerState
from guestcomms.domain.enums import CLAIMABLE, DeliveryStatus
from guestcomms.messages.models import Delivery

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from guestcomms.engine.dispatch import Dispatcher

# provider latencies run from a millisecond (the dev outbox's insert) to an SMTP timeout
LATENCY_BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: statuses counted as the queue: waiting to be sent or being sent (each group has a partial
#: index; ``held`` has none, and counting it would read every delivery, so it is left out)
QUEUE_STATUSES = (*CLAIMABLE, DeliveryStatus.SENDING)
#: the breaker gauge's values
BREAKER_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """The queue at one instant: deliveries per queue status, and the oldest due one's age."""

    depth: dict[str, int]
    oldest_due_age_seconds: float


async def read_queue(session: AsyncSession, *, now: datetime) -> QueueSnapshot:
    """Three queries over every organization, each matching a partial index's predicate so
    it reads only the queue's rows, never the finished ones: the claimable statuses' counts
    (the claim index), the ``sending`` count (the lease index), and the oldest ``send_at``
    among due claimable rows. Called by ``GET /metrics``."""
    # literals, not bound parameters: a planner uses a partial index only when it can prove
    # the query implies the index's WHERE (as db/queue.py's claim does)
    claimable = Delivery.status.in_([literal_column(f"'{s.value}'") for s in CLAIMABLE])
    rows = await session.execute(
        select(Delivery.status, func.count()).where(claimable).group_by(Delivery.status)
    )
    depth = {s.value: 0 for s in QUEUE_STATUSES} | {row[0]: row[1] for row in rows}
    depth[DeliveryStatus.SENDING.value] = (
        await session.scalar(
            select(func.count()).where(Delivery.status == literal_column("'sending'"))
        )
        or 0
    )
    oldest = await session.scalar(
        select(func.min(Delivery.send_at)).where(claimable, Delivery.send_at <= now)
    )
    if oldest is not None and oldest.tzinfo is None:  # SQLite hands back naive UTC
        oldest = oldest.replace(tzinfo=now.tzinfo)
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    return QueueSnapshot(depth=depth, oldest_due_age_seconds=age)


class Metrics:
    """The metrics of one process (an app, a worker, or both in ``serve``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.deliveries = Counter(
            "guestcomms_deliveries",
            "Delivery attempts the worker recorded, by the outcome they left the delivery in.",
            ["channel", "provider", "outcome"],
            registry=self.registry,
        )
        self.provider_latency = Histogram(
            "guestcomms_provider_send_seconds",
            "Time from handing an item to a provider to its result, once per item "
            "(a batch call's duration counts for each item it carried).",
            ["channel", "provider"],
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=self.registry,
        )
        self._queue_depth: Gauge | None = None
        self._queue_age: Gauge | None = None
        self._watched: list[Dispatcher] = []
        self._lock = threading.Lock()  # the worker's metrics server scrapes from a thread
        self.registry.register(_BreakerCollector(self))

    def record_outcome(self, *, channel: str, provider: str | None, outcome: str) -> None:
        """Count one recorded attempt (called by the worker after its outcomes commit)."""
        self.deliveries.labels(channel, provider or "none", outcome).inc()

    def observe_send(self, *, channel: str, provider: str, seconds: float, items: int) -> None:
        """Record a provider call that took ``seconds`` for ``items`` items (the dispatcher)."""
        child = self.provider_latency.labels(channel, provider)
        for _ in range(items):
            child.observe(seconds)

    def watch(self, dispatcher: Dispatcher) -> None:
        """Report ``dispatcher``'s breakers (``create_worker`` calls it)."""
        with self._lock:
            self._watched.append(dispatcher)

    def watched(self) -> list[Dispatcher]:
        """The dispatchers whose breakers are reported."""
        with self._lock:
            return list(self._watched)

    def refresh_queue(self, snapshot: QueueSnapshot) -> None:
        """Set the queue gauges (registered on first use: only the API reports the queue)."""
        if self._queue_depth is None or self._queue_age is None:
            self._queue_depth = Gauge(
                "guestcomms_queue_depth",
                "Deliveries waiting or being sent, by status (all organizations).",
                ["status"],
                registry=self.registry,
            )
            self._queue_age = Gauge(
                "guestcomms_queue_oldest_due_age_seconds",
                "How long the oldest due delivery has waited past its send_at (0: none due).",
                registry=self.registry,
            )
        for status, count in snapshot.depth.items():
            self._queue_depth.labels(status).set(count)
        self._queue_age.set(snapshot.oldest_due_age_seconds)


class _BreakerCollector(Collector):
    """Reads the watched dispatchers' breakers at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Any]:
        return []  # collected lazily: nothing to check for duplicates at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "guestcomms_breaker_state",
            "Circuit breaker of each provider route: 0 closed, 1 half-open, 2 open.",
            labels=["route", "channel", "provider"],
        )
        for dispatcher in self._metrics.watched():
            now = dispatcher.clock()
            labels = dict(dispatcher.route_labels)  # copies: the event loop may add meanwhile
            for key, breaker in dict(dispatcher.breakers).items():
                channel, provider = labels.get(key, ("", ""))
                family.add_metric([key, channel, provider], BREAKER_VALUES[breaker.state(now)])
        yield family


def bearer_ok(authorization: str | None, token: str | None) -> bool:
    """Whether an ``Authorization`` header satisfies the metrics token (always, if none)."""
    if token is None:
        return True
    return authorization is not None and hmac.compare_digest(
        authorization.encode(), f"Bearer {token}".encode()
    )


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds: not worth a log line each."""


def serve_metrics(
    metrics: Metrics, *, host: str, port: int, token: str | None
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``metrics`` on ``host:port`` from a daemon thread (``guestcomms worker``), with
    the same bearer token rule as ``GET /metrics``. Stop it with ``server.shutdown()``."""
    exposition = make_wsgi_app(metrics.registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Sequence[bytes]:
        if not bearer_ok(environ.get("HTTP_AUTHORIZATION"), token):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")],
            )
            return [b"a bearer token is required\n"]
        body: Sequence[bytes] = exposition(environ, start_response)
        return body

    wsgi: WSGIApplication = app
    server = make_server(host, port, wsgi, ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    return server, thread
