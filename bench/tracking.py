"""Open-pixel throughput: ``GET /t/o/{token}.gif`` requests per second on a real ``guestcomms
api`` process, on SQLite and (when reachable) PostgreSQL.

``python -m bench.tracking [--seconds 10] [--concurrency 32] [--deliveries 500]``, or the
``tracking-sqlite`` and ``tracking-postgres`` runs of ``python -m bench``.

Set-up, not timed: a fresh database, ``guestcomms keys create --org bench`` (which migrates
it), ``guestcomms api``, ``--deliveries`` guests imported and one email sent to them (no
worker runs: the deliveries exist, which is all a pixel needs); the open tokens are made here
with the server's secret, as the composer makes them. Timed: ``--concurrency`` keep-alive
connections each fetch random deliveries' pixels back to back for ``--seconds``, a mix of
mail-client and machine user agents. Every fetch is checked (200, the GIF) and every one must
be a row in ``tracking_events`` afterwards (the server answers only after the commit).
Prints requests per second, the latency p50/p99 of one fetch, and the client's own CPU
(share of one core): the client runs on the same cores as the server and the database, so it
must stay a small share for the figure to be the server's (see ``_Connection``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from rich.console import Console
from rich.table import Table

from bench.lean_http import KeepAlive
from bench.procs import BenchError, child_env, free_port, http_ready, run_cli, start
from bench.procs import venv_script as script
from bench.stores import postgres_store
from guestcomms.config import Settings
from guestcomms.tracking.rewrite import PIXEL_GIF
from guestcomms.tracking.tokens import make_open_token, tracking_key

SECRET = "bench-tracking-secret-key-0123456789"  # noqa: S105 - a throwaway bench database
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
USER_AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "Mozilla/5.0",  # Apple Mail Privacy Protection
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
)
TEMPLATE = {
    "name": "invitation",
    "subject": "You're invited",
    "html": "<p>Join us</p>",
    "text": "Join us",
}


@dataclass
class Result:
    """One store's figures."""

    store: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    stored: int
    client_cpu: float = 0.0  # the client's share of one core over the window
    error: str | None = None

    @property
    def per_second(self) -> float:
        """Requests per second over the timed window."""
        return self.requests / self.seconds


async def _deliveries(url: str) -> list[tuple[uuid.UUID, uuid.UUID]]:
    if url.startswith("sqlite"):
        with sqlite3.connect(url.split("///", 1)[1]) as db:
            rows = db.execute("SELECT organization_id, id FROM deliveries").fetchall()
        return [(uuid.UUID(org), uuid.UUID(dlv)) for org, dlv in rows]
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        rows = await conn.fetch("SELECT organization_id, id FROM deliveries")
    finally:
        await conn.close()
    return [(row["organization_id"], row["id"]) for row in rows]


async def _stored(url: str) -> int:
    if url.startswith("sqlite"):
        with sqlite3.connect(url.split("///", 1)[1]) as db:
            return int(db.execute("SELECT count(*) FROM tracking_events").fetchone()[0])
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM tracking_events"))
    finally:
        await conn.close()


async def _prepare(base: str, key: str, deliveries: int) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        rows = [{"email": f"guest{i}@bench.example"} for i in range(deliveries)]
        response = await client.post("/v1/contacts/import", json=rows)
        if response.status_code != 200:
            raise BenchError(f"import: {response.status_code} {response.text}")
        template = (await client.post("/v1/templates", json=TEMPLATE)).json()["id"]
        contacts: list[str] = []
        after: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": 500} | ({"after": after} if after else {})
            page = (await client.get("/v1/contacts", params=params)).json()
            contacts += [c["id"] for c in page["items"]]
            after = page["next_cursor"]
            if not after:
                break
        sent = await client.post(
            "/v1/messages", json={"template_id": template, "contact_ids": contacts}
        )
        if sent.status_code != 202:
            raise BenchError(f"send: {sent.status_code} {sent.text}")


@dataclass
class Hammered:
    """What one timed window of fetches measured."""

    latencies: list[float]
    seconds: float
    client_cpu: float  # this process's CPU seconds over the window (the client's cost)


async def _hammer(base: str, tokens: list[str], *, seconds: float, concurrency: int) -> Hammered:
    """``concurrency`` connections fetch random pixels back to back for ``seconds``; every
    answer must be a 200 with the GIF."""
    latencies: list[float] = []
    host, port = base.removeprefix("http://").rsplit(":", 1)
    connections = [await KeepAlive.open(host, int(port)) for _ in range(concurrency)]
    deadline = time.monotonic() + seconds

    async def client_loop(connection: KeepAlive, rng: random.Random) -> None:
        while time.monotonic() < deadline:
            token = rng.choice(tokens)
            started = time.perf_counter()
            status, body = await connection.get(
                f"/t/o/{token}.gif", headers={"User-Agent": rng.choice(USER_AGENTS)}
            )
            latencies.append(time.perf_counter() - started)
            if status != 200 or body != PIXEL_GIF:
                raise BenchError(f"pixel: {status} {body[:200]!r}")

    cpu, started = time.process_time(), time.monotonic()
    try:
        await asyncio.gather(*(client_loop(c, random.Random(i)) for i, c in enumerate(connections)))
    finally:
        for connection in connections:
            await connection.close()
    return Hammered(latencies, time.monotonic() - started, time.process_time() - cpu)


async def run_one(
    name: str, url: str, *, seconds: float, concurrency: int, deliveries: int, log_dir: Path
) -> Result:
    """Seed ``url``, serve it and measure the pixel."""
    env = child_env({"GUESTCOMMS_DATABASE_URL": url, "GUESTCOMMS_SECRET_KEY": SECRET})
    env["GUESTCOMMS_LOG_LEVEL"] = "WARNING"
    env["GUESTCOMMS_API_RATE_LIMIT"] = "1000000/minute"
    key = (await run_cli("keys", "create", "--org", "bench", env=env)).strip()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = await start(
        f"{name}-api",
        [script("guestcomms"), "api", "--port", str(port)],
        env=env,
        log_dir=log_dir,
    )
    try:
        await http_ready(base, children=[api], within=60)
        await _prepare(base, key, deliveries)
        secret = tracking_key(Settings(secret_key=SECRET))
        tokens = [
            make_open_token(secret, organization_id=org, delivery_id=delivery)
            for org, delivery in await _deliveries(url)
        ]
        await _hammer(base, tokens, seconds=1.0, concurrency=concurrency)  # warm-up
        before = await _stored(url)
        timed = await _hammer(base, tokens, seconds=seconds, concurrency=concurrency)
        stored = await _stored(url) - before
    finally:
        await api.stop()
    count = len(timed.latencies)
    if stored != count:
        raise BenchError(f"{name}: {count} pixel fetches but {stored} tracking events stored")
    cuts = statistics.quantiles(timed.latencies, n=100)
    return Result(
        name,
        count,
        timed.seconds,
        cuts[49] * 1000,
        cuts[98] * 1000,
        stored,
        client_cpu=timed.client_cpu / timed.seconds,
    )


RUNS = ("tracking-sqlite", "tracking-postgres")


async def run_all(
    names: Sequence[str],
    *,
    admin_dsn: str = ADMIN_DSN,
    seconds: float = 10.0,
    concurrency: int = 32,
    deliveries: int = 500,
) -> list[Result]:
    """The runs in ``names`` (``tracking-sqlite``, ``tracking-postgres``); a run that fails
    is a result with its ``error``."""
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="gc-bench-tracking-") as tmp:
        log_dir = Path(tmp)
        options: dict[str, Any] = {
            "seconds": seconds,
            "concurrency": concurrency,
            "deliveries": deliveries,
            "log_dir": log_dir,
        }
        for run in names:
            try:
                if run == "tracking-sqlite":
                    url = f"sqlite+aiosqlite:///{log_dir / 'tracking.db'}"
                    results.append(await run_one(run, url, **options))
                else:
                    async with postgres_store(admin_dsn) as fresh:
                        results.append(await run_one(run, fresh.url, **options))
            except (BenchError, OSError, asyncpg.PostgresError) as e:
                results.append(Result(run, 0, 1.0, 0.0, 0.0, 0, error=str(e)))
    return results


def table(results: Sequence[Result]) -> Table:
    """The figures as a table."""
    out = Table(title="open pixel: GET /t/o/{token}.gif on guestcomms api")
    columns = ("run", "fetches", "req/s", "p50 ms", "p99 ms", "stored", "client cpu")
    for column in columns:
        out.add_column(column, justify="right")
    for r in results:
        if r.error is not None:
            out.add_row(r.store, f"failed: {r.error}", *[""] * (len(columns) - 2))
            continue
        out.add_row(
            r.store,
            f"{r.requests:,}",
            f"{r.per_second:,.0f}",
            f"{r.p50_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.stored:,}",
            f"{r.client_cpu:.0%}",
        )
    return out


def cli() -> None:
    """Parse the options, run, print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.tracking", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--deliveries", type=int, default=500)
    parser.add_argument("--postgres", default=ADMIN_DSN, help="admin DSN (database test)")
    args = parser.parse_args()
    results = asyncio.run(
        run_all(
            RUNS,
            admin_dsn=args.postgres,
            seconds=args.seconds,
            concurrency=args.concurrency,
            deliveries=args.deliveries,
        )
    )
    Console().print(table(results))


if __name__ == "__main__":
    cli()
