"""One end-to-end run: real server processes, a 10,000-recipient send, timed to the last sent.

Set-up, once per kind of database (:func:`seeded`): a fresh database;
``guestcomms keys create --org bench`` (which also migrates it); ``guestcomms api``; the
guests imported with ``POST /v1/contacts/import`` (timed, for information) and the email and
SMS templates created with ``POST /v1/templates``. Each run then starts on its own copy of
that database, with the server started by the project's CLI and ``GUESTCOMMS_*`` variables
(``serve`` on SQLite; ``api`` plus one ``worker`` on PostgreSQL) and waited for. A run through
an HTTP provider then configures the organization's account with ``POST /v1/providers``,
pointed at the provider simulator (:mod:`bench.provider_sim`).

Timed: ``POST /v1/messages`` naming every contact. Its response time is the API accept
(every delivery is written in that request's transaction: the fan-out). The bench then polls
the deliveries' statuses until none is waiting, and reads back when each batch was recorded
as sent: end to end runs from sending the POST to the last ``sent`` event; the worker's
steady rate runs from the first recorded batch to the last.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import content
from bench.procs import BenchError, Child, child_env, free_port, http_ready, run_cli, start
from bench.procs import venv_script as script
from bench.profiling import Profiler
from bench.provider_sim import read_counts
from bench.smtp_sink import SinkStats, read_stats
from bench.stores import PostgresStore, SqliteStore, Store, postgres_store, sqlite_store
from guestcomms.channels.simulator import SimulatorCredentials

READY_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 0.1
PAGE_SIZE = 500  # the API's default maximum page size
IMPORT_CHUNK = 1000  # rows per import request: each stays well inside the HTTP timeout
MIN_BATCHES_FOR_RATE = 4
PENDING = frozenset({"queued", "scheduled", "sending", "retrying"})


@dataclass(frozen=True, slots=True)
class HttpAccount:
    """An HTTP provider the bench configures, pointed at the simulator."""

    kind: str  # the provider kind of ``POST /v1/providers``
    channel: str  # "email" or "sms"
    counter: str  # the simulator's name for it (its request counter)
    settings: dict[str, str]  # without base_url, which is the simulator's
    credentials: dict[str, str]

    def body(self, simulator_url: str) -> dict[str, Any]:
        """The ``POST /v1/providers`` body."""
        return {
            "name": f"bench-{self.kind.replace('_', '-')}",
            "kind": self.kind,
            "settings": {"base_url": simulator_url, **self.settings},
            "credentials": self.credentials,
        }


_SIMULATOR = SimulatorCredentials()
HTTP_ACCOUNTS = {
    account.kind: account
    for account in (
        HttpAccount("sendgrid", "email", "sendgrid", {}, {"api_key": _SIMULATOR.sendgrid_api_key}),
        HttpAccount(
            "twilio_sms",
            "sms",
            "twilio",
            {"account_sid": _SIMULATOR.twilio_account_sid, "sender": "+15005550006"},
            {"auth_token": _SIMULATOR.twilio_auth_token},
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Scenario:
    """Which database and which provider."""

    name: str
    store: str  # "sqlite" or "postgres"
    sink: str  # "outbox", "smtp", or an HTTP_ACCOUNTS kind ("sendgrid", "twilio_sms")
    default: bool = True  # part of a plain `make bench`

    @property
    def processes(self) -> str:
        """How the server runs, as the table shows it."""
        return "serve" if self.store == "sqlite" else "api + worker"

    @property
    def account(self) -> HttpAccount | None:
        """The HTTP provider this run sends through, if any."""
        return HTTP_ACCOUNTS.get(self.sink)

    @property
    def channel(self) -> str:
        """The channel the run sends on."""
        return self.account.channel if self.account is not None else "email"


SCENARIOS = (
    Scenario("sqlite-outbox", "sqlite", "outbox"),
    Scenario("sqlite-smtp", "sqlite", "smtp"),
    Scenario("sqlite-sendgrid", "sqlite", "sendgrid"),
    Scenario("sqlite-twilio", "sqlite", "twilio_sms"),
    Scenario("postgres-outbox", "postgres", "outbox"),
    Scenario("postgres-smtp", "postgres", "smtp"),
    Scenario("postgres-sendgrid", "postgres", "sendgrid", default=False),
    Scenario("postgres-twilio", "postgres", "twilio_sms", default=False),
)


@dataclass(frozen=True, slots=True)
class Sinks:
    """Where the runs' messages go, started once per bench: the SMTP sink's port and the
    provider simulator's base URL (None when no selected run needs it)."""

    smtp_port: int | None = None
    simulator_url: str | None = None


@dataclass(slots=True)
class E2EResult:
    """What one run measured; times in seconds."""

    scenario: Scenario
    recipients: int
    import_seconds: float = 0.0
    accept_seconds: float = 0.0
    end_to_end_seconds: float = 0.0
    drain_seconds: float = 0.0  # from the 202 to the last sent
    worker_rate: float | None = None  # steady state, from the recorded batches
    batches: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    received: int | None = None  # by the SMTP sink or the provider simulator
    profiled: bool = False
    error: str | None = None

    @property
    def sent(self) -> int:
        """Deliveries recorded as sent."""
        return self.counts.get("sent", 0)

    @property
    def receipt_mismatch(self) -> bool:
        """Whether the sink or simulator received other than the deliveries sent."""
        return self.received is not None and self.received != self.sent

    @property
    def fan_out_rate(self) -> float:
        """Deliveries written per second by the accepting request."""
        return self.recipients / self.accept_seconds if self.accept_seconds else 0.0

    @property
    def end_to_end_rate(self) -> float:
        """Deliveries sent per second, end to end."""
        return self.sent / self.end_to_end_seconds if self.end_to_end_seconds else 0.0


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Knobs shared by every run."""

    recipients: int
    connections: int  # SMTP pool size, the same as the ceiling's connections
    timeout: float  # for each waiting phase
    admin_dsn: str
    workdir: Path
    profile_dir: Path | None = None  # set: py-spy records the worker into this folder


@dataclass(frozen=True, slots=True)
class Seed:
    """A database with the bench organization, its key, the guests and the templates.

    Each run gets its own copy, so the import (the slow part of the set-up) happens once per
    kind of database, and every run still starts on a database nobody has sent from.
    """

    store: Store
    key: str
    contact_ids: list[str]
    template_id: str
    sms_template_id: str
    import_seconds: float


@contextlib.asynccontextmanager
async def seeded(kind: str, options: RunOptions) -> AsyncIterator[Seed]:
    """Build the seed database of ``kind`` ("sqlite" or "postgres") through the API."""
    logs = options.workdir / f"seed-{kind}"
    async with _store(kind, options, logs) as store:
        env = _env(options, store, sink_port=None)
        key = (await run_cli("keys", "create", "--org", "bench", env=env)).strip()
        async with contextlib.AsyncExitStack() as stack:
            port = free_port()
            base_url = f"http://127.0.0.1:{port}"
            argv = [script("guestcomms"), "api", "--host", "127.0.0.1", "--port", str(port)]
            api = await start("api", argv, env=env, log_dir=logs)
            stack.push_async_callback(api.stop)
            await http_ready(base_url, children=[api], within=READY_TIMEOUT_SECONDS)
            client = await stack.enter_async_context(_client(base_url, key, options))
            started = time.perf_counter()
            await _import(client, options.recipients)
            import_seconds = time.perf_counter() - started
            contact_ids = await _contact_ids(client)
            template_id = await _create_template(client, content.template_body())
            sms_template_id = await _create_template(client, content.sms_template_body())
        yield Seed(
            store=store,
            key=key,
            contact_ids=contact_ids,
            template_id=template_id,
            sms_template_id=sms_template_id,
            import_seconds=import_seconds,
        )


async def run(
    scenario: Scenario, seed: Seed, options: RunOptions, sinks: Sinks
) -> tuple[E2EResult, Profiler | None]:
    """Run ``scenario`` on a copy of ``seed``; failures end up in ``result.error``."""
    result = E2EResult(
        scenario=scenario, recipients=options.recipients, import_seconds=seed.import_seconds
    )
    profiler: Profiler | None = None
    logs = options.workdir / scenario.name
    try:
        if scenario.sink == "smtp" and sinks.smtp_port is None:
            raise BenchError("an SMTP run needs the sink")
        if scenario.account is not None and sinks.simulator_url is None:
            raise BenchError("an HTTP provider run needs the simulator")
        async with contextlib.AsyncExitStack() as stack:
            store = await stack.enter_async_context(
                _store(scenario.store, options, logs, copy_of=seed.store)
            )
            smtp_port = sinks.smtp_port if scenario.sink == "smtp" else None
            env = _env(options, store, sink_port=smtp_port)
            base_url, worker = await _start_server(scenario, env, store, logs, stack)
            client = await stack.enter_async_context(_client(base_url, seed.key, options))
            if scenario.account is not None and sinks.simulator_url is not None:
                await _configure_provider(client, scenario.account, sinks.simulator_url)
            if options.profile_dir is not None:
                profiler = Profiler(
                    pid=worker.pid, output=options.profile_dir / f"{scenario.name}.txt"
                )
                await profiler.start()
                stack.push_async_callback(profiler.stop)
            before = await _received(scenario, sinks)
            await _send_and_wait(client, store, result, seed, options, worker, scenario)
            if profiler is not None:
                await profiler.stop()
                result.profiled = True
            after = await _received(scenario, sinks)
            if before is not None and after is not None:
                result.received = after - before
    except (BenchError, httpx.HTTPError, OSError) as e:
        result.error = f"{type(e).__name__}: {e}"
    return result, profiler


def _client(base_url: str, key: str, options: RunOptions) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=options.timeout
    )


@contextlib.asynccontextmanager
async def _store(
    kind: str, options: RunOptions, logs: Path, *, copy_of: Store | None = None
) -> AsyncIterator[Store]:
    await asyncio.to_thread(logs.mkdir, parents=True, exist_ok=True)
    if kind == "sqlite":
        assert copy_of is None or isinstance(copy_of, SqliteStore)
        async with sqlite_store(logs, copy_of=copy_of) as sqlite:
            yield sqlite
    else:
        assert copy_of is None or isinstance(copy_of, PostgresStore)
        async with postgres_store(options.admin_dsn, copy_of=copy_of) as postgres:
            yield postgres


def _env(options: RunOptions, store: Store, *, sink_port: int | None) -> dict[str, str]:
    """The server's settings; SMTP to the sink when ``sink_port`` is given, else the outbox."""
    values = {
        "GUESTCOMMS_DATABASE_URL": store.url,
        "GUESTCOMMS_LOG_LEVEL": "WARNING",
        "GUESTCOMMS_SHUTDOWN_GRACE_SECONDS": "5",
        # a throughput run at any hour: SMS sent, not deferred to 08:00 (engine/pacing.py)
        "GUESTCOMMS_QUIET_HOURS": "off",
        "GUESTCOMMS_MAX_RECIPIENTS_PER_MESSAGE": str(max(options.recipients, 100_000)),
    }
    if sink_port is not None:
        values |= {
            "GUESTCOMMS_SMTP_HOST": "127.0.0.1",
            "GUESTCOMMS_SMTP_PORT": str(sink_port),
            "GUESTCOMMS_SMTP_POOL_SIZE": str(options.connections),
        }
    return child_env(values)


async def _start_server(
    scenario: Scenario,
    env: dict[str, str],
    store: Store,
    logs: Path,
    stack: contextlib.AsyncExitStack,
) -> tuple[str, Child]:
    """Start the server processes; return the API's base URL and the process that sends."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    guestcomms = script("guestcomms")
    address = ("--host", "127.0.0.1", "--port", str(port))
    if scenario.store == "sqlite":
        server = await start("serve", [guestcomms, "serve", *address], env=env, log_dir=logs)
        stack.push_async_callback(server.stop)
        await http_ready(base_url, children=[server], within=READY_TIMEOUT_SECONDS)
        return base_url, server
    api = await start("api", [guestcomms, "api", *address], env=env, log_dir=logs)
    stack.push_async_callback(api.stop)
    worker = await start("worker", [guestcomms, "worker"], env=env, log_dir=logs)
    stack.push_async_callback(worker.stop)
    await http_ready(base_url, children=[api, worker], within=READY_TIMEOUT_SECONDS)
    # The worker LISTENs just before its lanes start: wait for that, or the timed run
    # would include the worker's own start-up.
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not await store.worker_listening():
        if not worker.alive:
            raise worker.died()
        if time.monotonic() > deadline:
            raise BenchError(f"the worker did not start listening:\n{worker.tail()}")
        await asyncio.sleep(POLL_SECONDS)
    return base_url, worker


def _check(response: httpx.Response, expected: int, what: str) -> Any:
    if response.status_code != expected:
        raise BenchError(f"{what}: HTTP {response.status_code}: {response.text[:500]}")
    return response.json()


async def _import(client: httpx.AsyncClient, count: int) -> None:
    """Import ``count`` guests, ``IMPORT_CHUNK`` rows per request (a guest-list file each)."""
    rows = content.guests(count)
    for first in range(0, count, IMPORT_CHUNK):
        chunk = rows[first : first + IMPORT_CHUNK]
        report = _check(
            await client.post("/v1/contacts/import", json=chunk), 200, "import contacts"
        )
        if report["created"] != len(chunk) or report["errors"]:
            raise BenchError(f"import: {report['created']} created, errors {report['errors'][:3]}")


async def _contact_ids(client: httpx.AsyncClient) -> list[str]:
    ids: list[str] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": PAGE_SIZE} | ({"after": after} if after else {})
        page = _check(await client.get("/v1/contacts", params=params), 200, "list contacts")
        ids.extend(item["id"] for item in page["items"])
        after = page["next_cursor"]
        if after is None:
            return ids


async def _create_template(client: httpx.AsyncClient, template: dict[str, Any]) -> str:
    body = _check(await client.post("/v1/templates", json=template), 201, "create template")
    template_id: str = body["id"]
    return template_id


async def _configure_provider(
    client: httpx.AsyncClient, account: HttpAccount, simulator_url: str
) -> None:
    """The organization's provider account. The server has not sent for the organization
    yet, so its worker has no cached accounts and the first batch already uses this one."""
    body = _check(
        await client.post("/v1/providers", json=account.body(simulator_url)),
        201,
        f"configure the {account.kind} provider",
    )
    if body.get("status") != "active" or body.get("channel") != account.channel:
        raise BenchError(f"the {account.kind} account is not usable: {body}")


async def _send_and_wait(
    client: httpx.AsyncClient,
    store: Store,
    result: E2EResult,
    seed: Seed,
    options: RunOptions,
    worker: Child,
    scenario: Scenario,
) -> None:
    body: dict[str, Any] = {
        "template_id": seed.template_id,
        "contact_ids": seed.contact_ids,
        "variables": content.VARIABLES,
    }
    if scenario.channel == "sms":
        body |= {"template_id": seed.sms_template_id, "channels": ["sms"]}
    posted_at = datetime.now(UTC)
    started = time.perf_counter()
    response = await client.post("/v1/messages", json=body)
    result.accept_seconds = time.perf_counter() - started
    accepted_at = datetime.now(UTC)
    accepted = _check(response, 202, "send message")
    if accepted["recipient_count"] != result.recipients:
        raise BenchError(f"the message has {accepted['recipient_count']} recipients")
    deadline = time.monotonic() + options.timeout
    while True:
        result.counts = await store.counts()
        if not PENDING & result.counts.keys():
            break
        if not worker.alive:
            raise worker.died()
        if time.monotonic() > deadline:
            raise BenchError(f"not drained after {options.timeout:.0f}s: {result.counts}")
        await asyncio.sleep(POLL_SECONDS)
    batches = await store.sent_batches()
    if not batches:
        raise BenchError(f"nothing was sent: {result.counts}")
    first_at, first_count = batches[0]
    last_at = batches[-1][0]
    result.batches = len(batches)
    result.end_to_end_seconds = (last_at - posted_at).total_seconds()
    result.drain_seconds = max((last_at - accepted_at).total_seconds(), 0.0)
    window = (last_at - first_at).total_seconds()
    # Lanes record side by side: with only a few batches the window says nothing.
    if len(batches) >= MIN_BATCHES_FOR_RATE and window > 0:
        result.worker_rate = (sum(n for _, n in batches) - first_count) / window


async def _received(scenario: Scenario, sinks: Sinks) -> int | None:
    """What the run's sink or simulator has received so far; None for the outbox."""
    if scenario.sink == "smtp" and sinks.smtp_port is not None:
        stats: SinkStats = await asyncio.to_thread(read_stats, sinks.smtp_port)
        return stats.messages
    if scenario.account is not None and sinks.simulator_url is not None:
        counts = await read_counts(sinks.simulator_url)
        return counts.get(scenario.account.counter, 0)
    return None
