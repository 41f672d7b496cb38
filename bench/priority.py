"""The emergency lane under a backlog: API accept -> provider hand-off, p50/p99.

Runs ``sqlite-priority`` and ``postgres-priority`` (``python -m bench --only ...``). Set-up,
not timed, on a fresh database: ``guestcomms keys create --org bench``; ``guestcomms api``
alone (no worker, so nothing drains yet) to configure the organization's SendGrid account
pointed at the provider simulator (``POST /v1/providers``), import 200 guests and the
``urgent<n>@example.org`` recipients of the emergencies, create the invitation template and
send it to the 200 guests; then the backlog: those 200 deliveries copied in SQL up to
``--backlog`` (default 100,000) queued, normal-priority deliveries of the same organization
and provider account (one ``INSERT ... SELECT``; the copies share the guests).

Timed: the server starts as an operator runs it (``serve`` on SQLite; ``api`` plus one
``worker`` on PostgreSQL) and drains the backlog through the simulator. Once it is sending,
the bench sends one emergency to warm up (not counted: the first of its kind compiles
statements and fills caches, which a server that has been up for a while has done), then
``--emergencies`` (default 50) emergency messages through the real API, one every
``--emergency-interval`` seconds (default 0.05), each to its own ``urgent<n>`` recipient.
A message's
latency runs from the moment the bench sends its ``POST /v1/messages`` to the moment its
request reaches the simulator (``time.monotonic()`` in both processes: CLOCK_MONOTONIC, one
clock for the machine); the accept (the 202's response time) is part of it. The backlog
left when the last emergency was handed off shows that all of them met a backlog.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

from bench import content, e2e
from bench.procs import BenchError, Child, free_port, http_ready, run_cli, start
from bench.procs import venv_script as script
from bench.provider_sim import forget_marked, read_marked
from bench.stores import PostgresStore, SqliteStore, Store, postgres_reachable

RUNS = ("sqlite-priority", "postgres-priority")
GUESTS = 200  # imported; the backlog repeats them
DRAINING_AT = 1_000  # sent before the first emergency: the worker is at full speed
LATENCY_TARGET_MS = 50.0  # DESIGN.md: emergency under a backlog, p99
URGENT_EMAIL = "urgent{}@example.org"  # bench/provider_sim.py watches for these
WARM_UP = 99_999  # the recipient number of the uncounted first emergency

# The backlog: the seed message's deliveries copied ``copies`` times, each copy a new id
# and idempotency key (the guests repeat, as if several campaigns went to the same list).
_COPY_PG = """
INSERT INTO deliveries (
    id, idempotency_key, organization_id, message_id, contact_id, channel, status, priority,
    send_at, attempts, template_version_id, variables, created_at, updated_at)
SELECT gen_random_uuid(), 'bench_' || g.i || '_' || d.id,
    d.organization_id, d.message_id, d.contact_id, d.channel, d.status, d.priority, d.send_at,
    d.attempts, d.template_version_id, d.variables, d.created_at, d.updated_at
FROM deliveries AS d CROSS JOIN generate_series(1, $1) AS g(i)
WHERE d.message_id = (SELECT message_id FROM deliveries LIMIT 1)
"""
_COPY_SQLITE = """
WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ?)
INSERT INTO deliveries (
    id, idempotency_key, organization_id, message_id, contact_id, channel, status, priority,
    send_at, attempts, template_version_id, variables, created_at, updated_at)
SELECT lower(hex(randomblob(16))), 'bench_' || g.i || '_' || d.id,
    d.organization_id, d.message_id, d.contact_id, d.channel, d.status, d.priority, d.send_at,
    d.attempts, d.template_version_id, d.variables, d.created_at, d.updated_at
FROM deliveries AS d CROSS JOIN g
WHERE d.message_id = (SELECT message_id FROM deliveries LIMIT 1)
"""
_QUEUED_SQL = "SELECT count(*) FROM deliveries WHERE status IN ('queued', 'sending')"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This bench's options of ``python -m bench``."""
    group = parser.add_argument_group("priority runs (sqlite-priority, postgres-priority)")
    group.add_argument(
        "--backlog", type=int, default=100_000, help="normal deliveries queued (default 100000)"
    )
    group.add_argument("--emergencies", type=int, default=50, help="emergency messages sent")
    group.add_argument(
        "--emergency-interval", type=float, default=0.05, help="seconds between them"
    )
    group.add_argument(
        "--no-emergency-lane",
        action="store_true",
        help="run the server with GUESTCOMMS_EMERGENCY_LANE=false, for comparison",
    )


@dataclass(slots=True)
class PriorityResult:
    """One priority run; times in milliseconds."""

    name: str
    store: str
    backlog: int
    emergency_lane: bool = True
    latencies_ms: list[float] = field(default_factory=list)
    accepts_ms: list[float] = field(default_factory=list)
    left_at_end: int | None = None  # backlog still queued when the last emergency went out
    sent_before: int | None = None  # backlog already sent when the first emergency was sent
    seconds: float = 0.0
    error: str | None = None

    def percentile(self, values: list[float], q: float) -> float | None:
        """The ``q`` quantile (0..1) of ``values``, or None when there are none."""
        if not values:
            return None
        if len(values) == 1:
            return values[0]
        return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


async def run_all(
    args: argparse.Namespace, names: list[str], simulator_url: str
) -> list[PriorityResult]:
    """Run each named priority run in turn; a failure ends up in its result's ``error``."""
    results = []
    for name in names:
        store = "sqlite" if name.startswith("sqlite") else "postgres"
        result = PriorityResult(
            name=name,
            store=store,
            backlog=args.backlog,
            emergency_lane=not args.no_emergency_lane,
        )
        started = time.monotonic()
        try:
            if store == "postgres" and (down := await postgres_reachable(args.postgres)):
                raise BenchError(f"PostgreSQL unreachable: {down}")
            await _run(args, result, simulator_url)
        except (BenchError, httpx.HTTPError, OSError) as e:
            result.error = f"{type(e).__name__}: {e}"
        result.seconds = time.monotonic() - started
        results.append(result)
    return results


async def _run(args: argparse.Namespace, result: PriorityResult, simulator_url: str) -> None:
    options = e2e.RunOptions(
        recipients=args.backlog,
        connections=args.connections,
        timeout=args.timeout,
        admin_dsn=args.postgres,
        workdir=args.workdir,
    )
    logs = args.workdir / result.name
    scenario = e2e.Scenario(result.name, result.store, "sendgrid")
    async with e2e._store(result.store, options, logs) as store:
        env = e2e._env(options, store, sink_port=None)
        key = (await run_cli("keys", "create", "--org", "bench", env=env)).strip()
        body = await _set_up(env, key, logs, options, simulator_url, emergencies=args.emergencies)
        await _copy_backlog(store, copies=max(args.backlog // GUESTS - 1, 0))
        if not result.emergency_lane:
            env = {**env, "GUESTCOMMS_EMERGENCY_LANE": "false"}
        async with contextlib.AsyncExitStack() as stack:
            base_url, worker = await e2e._start_server(scenario, env, store, logs, stack)
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=base_url,
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=args.timeout,
                )
            )
            await _wait_draining(store, worker, within=args.timeout)
            # one emergency first, not counted: the first of its kind compiles statements
            # and fills caches in both processes, which a long-running server has done
            warm = await _send_emergencies(client, body, [WARM_UP], interval=0.0)
            await _wait_handed_off(simulator_url, set(warm), worker, args.timeout)
            await forget_marked(simulator_url)
            result.sent_before = (await store.counts()).get("sent", 0)
            sent_at = await _send_emergencies(
                client,
                body,
                range(args.emergencies),
                interval=args.emergency_interval,
                accepts_ms=result.accepts_ms,
            )
            arrived = await _wait_handed_off(simulator_url, set(sent_at), worker, args.timeout)
            result.left_at_end = await _left(store)
            result.latencies_ms = [(arrived[r] - sent_at[r]) * 1000 for r in sorted(sent_at)]


async def _set_up(
    env: dict[str, str],
    key: str,
    logs: Path,
    options: e2e.RunOptions,
    simulator_url: str,
    *,
    emergencies: int,
) -> dict[str, Any]:
    """With ``guestcomms api`` alone: the provider account, the guests, the template, the
    seed message to the guests. Returns an emergency message's body, recipient left out."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    argv = [script("guestcomms"), "api", "--host", "127.0.0.1", "--port", str(port)]
    api = await start("setup-api", argv, env=env, log_dir=logs)
    try:
        await http_ready(base_url, children=[api], within=e2e.READY_TIMEOUT_SECONDS)
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=options.timeout
        ) as client:
            await e2e._configure_provider(client, e2e.HTTP_ACCOUNTS["sendgrid"], simulator_url)
            urgent = [
                {"email": URGENT_EMAIL.format(n), "first_name": "Sam"}
                for n in [WARM_UP, *range(emergencies)]
            ]
            rows = content.guests(GUESTS) + urgent
            report = e2e._check(
                await client.post("/v1/contacts/import", json=rows), 200, "import contacts"
            )
            if report["created"] != len(rows):
                raise BenchError(f"import: {report}")
            ids = await _contacts_by_email(client)
            template = await e2e._create_template(client, content.template_body())
            guests = [ids[row["email"]] for row in content.guests(GUESTS)]
            seed = {"template_id": template, "variables": content.VARIABLES}
            e2e._check(
                await client.post("/v1/messages", json={**seed, "contact_ids": guests}),
                202,
                "seed message",
            )
            return {**seed, "priority": "emergency", "urgent_ids": ids}
    finally:
        await api.stop()


async def _contacts_by_email(client: httpx.AsyncClient) -> dict[str, str]:
    found: dict[str, str] = {}
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": e2e.PAGE_SIZE} | ({"after": after} if after else {})
        page = e2e._check(await client.get("/v1/contacts", params=params), 200, "contacts")
        found |= {item["email"]: item["id"] for item in page["items"]}
        after = page["next_cursor"]
        if after is None:
            return found


async def _copy_backlog(store: Store, *, copies: int) -> None:
    """Queue the backlog: ``copies`` more copies of the seed message's deliveries."""
    if copies <= 0:
        return
    if isinstance(store, PostgresStore):
        connection = await store._connection()
        await connection.execute(_COPY_PG, copies)
        await connection.execute("ANALYZE deliveries")
        return
    assert isinstance(store, SqliteStore)
    await store.close()  # the probe opens read-only; write with a connection of our own
    await asyncio.to_thread(_copy_sqlite, store.path, copies)


def _copy_sqlite(path: Path, copies: int) -> None:
    import sqlite3  # noqa: PLC0415 - only this helper writes with the stdlib driver

    with contextlib.closing(sqlite3.connect(path, timeout=30)) as connection:
        connection.execute(_COPY_SQLITE, (copies,))
        connection.commit()


async def _wait_draining(store: Store, worker: Child, *, within: float) -> None:
    deadline = time.monotonic() + within
    while (await store.counts()).get("sent", 0) < DRAINING_AT:
        if not worker.alive:
            raise worker.died()
        if time.monotonic() > deadline:
            raise BenchError(f"the backlog did not start draining within {within:.0f}s")
        await asyncio.sleep(e2e.POLL_SECONDS)


async def _send_emergencies(
    client: httpx.AsyncClient,
    body: dict[str, Any],
    numbers: Iterable[int],
    *,
    interval: float,
    accepts_ms: list[float] | None = None,
) -> dict[str, float]:
    """Send one emergency to each ``urgent<n>`` recipient, ``interval`` seconds apart;
    return when each POST was sent (monotonic), by recipient email."""
    ids = body["urgent_ids"]
    message = {k: v for k, v in body.items() if k != "urgent_ids"}
    sent_at: dict[str, float] = {}
    for n in numbers:
        email = URGENT_EMAIL.format(n)
        started = time.monotonic()
        response = await client.post("/v1/messages", json={**message, "contact_ids": [ids[email]]})
        if accepts_ms is not None:
            accepts_ms.append((time.monotonic() - started) * 1000)
        e2e._check(response, 202, "emergency message")
        sent_at[email] = started
        await asyncio.sleep(interval)
    return sent_at


async def _wait_handed_off(
    simulator_url: str, emails: set[str], worker: Child, within: float
) -> dict[str, float]:
    deadline = time.monotonic() + within
    while True:
        arrived = await read_marked(simulator_url)
        if emails <= arrived.keys():
            return arrived
        if not worker.alive:
            raise worker.died()
        if time.monotonic() > deadline:
            missing = len(emails - arrived.keys())
            raise BenchError(f"{missing} emergencies not handed off within {within:.0f}s")
        await asyncio.sleep(e2e.POLL_SECONDS)


async def _left(store: Store) -> int:
    if isinstance(store, PostgresStore):
        value = await (await store._connection()).fetchval(_QUEUED_SQL)
        return int(value)
    assert isinstance(store, SqliteStore)
    rows = await asyncio.to_thread(store._query, _QUEUED_SQL)
    return int(rows[0][0])


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def table(results: list[PriorityResult]) -> Table:
    """The figures, one row per run."""
    out = Table(
        title="Emergency under a backlog: POST /v1/messages sent -> request at the provider"
    )
    for name in ("run", "database", "emergency lane"):
        out.add_column(name, no_wrap=True)
    for name in (
        "backlog\nqueued",
        "sent before\nfirst",
        "left after\nlast",
        "emergencies",
        "accept\np50 ms",
        "hand-off\np50 ms",
        "hand-off\np99 ms",
        "hand-off\nmax ms",
        f"p99 < {LATENCY_TARGET_MS:.0f} ms",
    ):
        out.add_column(name, justify="right")
    for r in results:
        if r.error is not None:
            out.add_row(r.name, r.store, "on" if r.emergency_lane else "off", f"{r.error}")
            continue
        p99 = r.percentile(r.latencies_ms, 0.99)
        out.add_row(
            r.name,
            r.store,
            "on" if r.emergency_lane else "off",
            f"{r.backlog:,}",
            f"{r.sent_before:,}" if r.sent_before is not None else "-",
            f"{r.left_at_end:,}" if r.left_at_end is not None else "-",
            str(len(r.latencies_ms)),
            _ms(r.percentile(r.accepts_ms, 0.5)),
            _ms(r.percentile(r.latencies_ms, 0.5)),
            _ms(p99),
            _ms(max(r.latencies_ms, default=None)),
            "yes" if p99 is not None and p99 < LATENCY_TARGET_MS else "no",
        )
    return out
