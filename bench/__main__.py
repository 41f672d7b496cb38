"""``python -m bench``: run the benchmarks and print their figures as tables.

Runs, selectable with ``--only`` (comma-separated, or repeated):

- ``smtp-ceiling``: a bare aiosmtplib client against the SMTP sink, on asyncio and uvloop;
- ``sqlite-outbox``, ``sqlite-smtp``: ``guestcomms serve`` on a fresh SQLite file;
- ``sqlite-sendgrid``, ``sqlite-twilio``: the same, sending email through the SendGrid
  provider or SMS through the Twilio provider, both against the provider simulator;
- ``postgres-outbox``, ``postgres-smtp``: ``guestcomms api`` + ``guestcomms worker`` on a
  fresh PostgreSQL database (skipped, with the reason, when the server cannot be reached);
- ``postgres-sendgrid``, ``postgres-twilio``: only with ``--all`` or when named with
  ``--only`` (they would take ``make bench`` past its time budget).

- ``fanout-sqlite``, ``fanout-postgres``: a 50,000-guest campaign fanned out into
  deliveries (``bench/fanout.py``, in a child process: rate, phases and RSS growth).
- ``sqlite-priority``, ``postgres-priority``: emergency messages sent through the API while a
  100,000-delivery backlog drains; API accept -> provider hand-off p50/p99 (``bench/priority.py``).
- ``tracking-sqlite``, ``tracking-postgres``: open-pixel fetches per second on ``guestcomms
  api`` (``bench/tracking.py``).
- ``analytics-sqlite``, ``analytics-postgres``: ``GET /v1/analytics`` p50/p99 over a history
  of ``--analytics-events`` delivery events (default 1,000,000; ``bench/analytics.py``).

``--recipients N`` sizes every run (default 10,000); ``--profile RUN`` records the worker of
that run with py-spy and prints where its time went. Exit status 1 if any run failed, or if
the SMTP sink or the simulator received other than the deliveries recorded as sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import analytics as analytics_bench
from bench import e2e
from bench import fanout as fanout_bench
from bench import priority as priority_bench
from bench import tracking as tracking_bench
from bench.ceiling import CeilingResult
from bench.content import MAX_GUESTS
from bench.procs import (
    BenchError,
    child_env,
    read_ready_line,
    start,
    start_simulator,
    start_sink,
)
from bench.profiling import ProfileSummary
from bench.report import ceiling_table, e2e_table, machine, make_console, profile_tables
from bench.smtp_sink import read_stats
from bench.stores import DEFAULT_ADMIN_DSN, postgres_reachable

CEILING = "smtp-ceiling"
FANOUT_RUNS = {"fanout-sqlite": "sqlite", "fanout-postgres": "postgres"}
RUNS = (
    CEILING,
    *(s.name for s in e2e.SCENARIOS),
    *FANOUT_RUNS,
    *priority_bench.RUNS,
    *tracking_bench.RUNS,
    *analytics_bench.RUNS,
)
DEFAULT_RUNS = (
    CEILING,
    *(s.name for s in e2e.SCENARIOS if s.default),
    *FANOUT_RUNS,
    *priority_bench.RUNS,
    *tracking_bench.RUNS,
    *analytics_bench.RUNS,
)
FANOUT_TIMEOUT_SECONDS = 300.0
CEILING_LOOPS = ("asyncio", "uvloop")
CEILING_TIMEOUT_SECONDS = 180.0

console = make_console()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``--only`` and ``--profile`` are checked against the run names."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="guestcomms benchmarks (see docs/performance.md)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="RUN[,RUN]",
        help=f"runs to do (default: {', '.join(DEFAULT_RUNS)}); also: "
        f"{', '.join(r for r in RUNS if r not in DEFAULT_RUNS)}",
    )
    parser.add_argument(
        "--all", action="store_true", help="every run, also those a plain `make bench` skips"
    )
    parser.add_argument("--recipients", type=int, default=10_000, help="per run (default 10000)")
    parser.add_argument(
        "--connections",
        type=int,
        default=8,
        help="SMTP connections: the ceiling's, and the provider pool size (default 8)",
    )
    parser.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="RUN",
        help="record this run's worker with py-spy (needs py-spy in the venv)",
    )
    parser.add_argument(
        "--timeout", type=float, default=180.0, help="seconds allowed for each waiting phase"
    )
    parser.add_argument("--postgres", default=DEFAULT_ADMIN_DSN, help="admin DSN (database test)")
    parser.add_argument(
        "--analytics-events",
        type=int,
        default=1_000_000,
        help="delivery events of the analytics runs' history (default 1000000)",
    )
    parser.add_argument("--out", type=Path, help="keep logs and profiles in this folder")
    priority_bench.add_arguments(parser)
    args = parser.parse_args(argv)
    args.only = [n.strip() for item in args.only for n in item.split(",") if n.strip()] or list(
        RUNS if args.all else DEFAULT_RUNS
    )
    args.profile = [n.strip() for item in args.profile for n in item.split(",") if n.strip()]
    for name in [*args.only, *args.profile]:
        if name not in RUNS:
            parser.error(f"unknown run {name!r}; choose from {', '.join(RUNS)}")
    for name in args.profile:
        if name == CEILING:
            parser.error("--profile takes an end-to-end run, not the ceiling")
        if name not in args.only:
            args.only.append(name)
    if args.recipients < 1 or args.connections < 1:
        parser.error("--recipients and --connections must be at least 1")
    if args.recipients > MAX_GUESTS:
        parser.error(f"--recipients: at most {MAX_GUESTS:,}")
    return args


async def run_ceiling(
    *, port: int, loop: str, messages: int, connections: int, workdir: Path
) -> CeilingResult:
    """Run the bare-client ceiling in a child process; check the sink got every message."""
    before = await asyncio.to_thread(read_stats, port)
    child = await start(
        f"ceiling-{loop}",
        [
            sys.executable,
            "-m",
            "bench.ceiling",
            "--port",
            str(port),
            "--messages",
            str(messages),
            "--connections",
            str(connections),
            "--loop",
            loop,
        ],
        env=child_env({}),
        log_dir=workdir,
        stdout_pipe=True,
    )
    try:
        line = await read_ready_line(child, prefix="RESULT", within=CEILING_TIMEOUT_SECONDS)
    finally:
        await child.stop()
    result = CeilingResult(**json.loads(line))
    got = (await asyncio.to_thread(read_stats, port)).messages - before.messages
    if got != result.messages:
        raise BenchError(f"the sink counted {got} messages, the client sent {result.messages}")
    return result


@dataclass
class Findings:
    """Everything measured in one bench invocation."""

    ok: bool = True
    ceilings: list[CeilingResult] = field(default_factory=list)
    results: list[e2e.E2EResult] = field(default_factory=list)
    profiles: list[tuple[str, ProfileSummary, Path]] = field(default_factory=list)
    fanouts: list[fanout_bench.FanoutResult] = field(default_factory=list)
    priorities: list[priority_bench.PriorityResult] = field(default_factory=list)
    trackings: list[tracking_bench.Result] = field(default_factory=list)
    analytics: list[analytics_bench.Result] = field(default_factory=list)

    def failed_run(self, name: str, error: str | None) -> bool:
        """Whether a run came back with an error (then recorded as a failure and printed)."""
        if error is None:
            return False
        self.ok = False
        console.print(f"[red]  {name} failed:[/] {error}")
        return True

    def failed(self, scenario: e2e.Scenario, recipients: int, error: str) -> None:
        """Record a run that could not happen."""
        self.ok = False
        result = e2e.E2EResult(scenario=scenario, recipients=recipients)
        result.error = error
        self.results.append(result)


async def ceilings(args: argparse.Namespace, sink_port: int, found: Findings) -> None:
    """The raw SMTP ceiling on each event loop."""
    for loop in CEILING_LOOPS:
        started = time.monotonic()
        try:
            ceiling = await run_ceiling(
                port=sink_port,
                loop=loop,
                messages=args.recipients,
                connections=args.connections,
                workdir=args.workdir,
            )
        except BenchError as e:
            found.ok = False
            console.print(f"[red]  {CEILING} ({loop}) failed:[/] {e}")
            continue
        found.ceilings.append(ceiling)
        console.print(
            f"  {CEILING} ({loop}): {ceiling.rate:,.0f} msgs/s "
            f"[dim]({time.monotonic() - started:.0f}s)[/]"
        )


async def seed_and_run(
    args: argparse.Namespace,
    scenarios: list[e2e.Scenario],
    sinks: e2e.Sinks,
    found: Findings,
) -> None:
    """Seed each kind of database the scenarios need (in parallel: the import is slow and
    not what is measured), then run each scenario, one at a time, on a copy of its seed."""
    options = e2e.RunOptions(
        recipients=args.recipients,
        connections=args.connections,
        timeout=args.timeout,
        admin_dsn=args.postgres,
        workdir=args.workdir,
    )
    kinds = []
    for kind in ("sqlite", "postgres"):
        of_kind = [s for s in scenarios if s.store == kind]
        if not of_kind:
            continue
        if kind == "postgres" and (down := await postgres_reachable(args.postgres)):
            for scenario in of_kind:
                found.failed(scenario, args.recipients, f"PostgreSQL unreachable: {down}")
            continue
        kinds.append(kind)
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        seeds = await asyncio.gather(
            *(stack.enter_async_context(e2e.seeded(kind, options)) for kind in kinds),
            return_exceptions=True,
        )
        for kind, seed in zip(kinds, seeds, strict=True):
            of_kind = [s for s in scenarios if s.store == kind]
            if isinstance(seed, BaseException):
                console.print(f"[red]  seeding {kind} failed:[/] {seed}")
                for scenario in of_kind:
                    found.failed(scenario, args.recipients, f"seeding failed: {seed}")
                continue
            console.print(
                f"  seeded {kind}: {args.recipients:,} contacts imported in "
                f"{seed.import_seconds:.1f}s [dim]({time.monotonic() - started:.0f}s)[/]"
            )
        for kind, seed in zip(kinds, seeds, strict=True):
            if isinstance(seed, e2e.Seed):
                for scenario in (s for s in scenarios if s.store == kind):
                    await one_run(args, scenario, seed, options, sinks, found)


async def one_run(
    args: argparse.Namespace,
    scenario: e2e.Scenario,
    seed: e2e.Seed,
    options: e2e.RunOptions,
    sinks: e2e.Sinks,
    found: Findings,
) -> None:
    """One end-to-end run, profiled if asked."""
    started = time.monotonic()
    if scenario.name in args.profile:
        options = dataclasses.replace(options, profile_dir=args.workdir / "profiles")
    result, profiler = await e2e.run(scenario, seed, options, sinks)
    found.results.append(result)
    if found.failed_run(scenario.name, result.error):
        return
    console.print(
        f"  {scenario.name}: {result.end_to_end_rate:,.0f} msgs/s end to end "
        f"[dim]({time.monotonic() - started:.0f}s)[/]"
    )
    if result.receipt_mismatch:
        found.ok = False
        console.print(
            f"[red]  {scenario.name}: {result.sent:,} recorded as sent, but "
            f"{result.received:,} received[/]"
        )
    if profiler is not None:
        try:
            found.profiles.append((scenario.name, profiler.summary(), profiler.output))
        except BenchError as e:
            console.print(f"[red]  profile of {scenario.name}: {e}[/]")


async def fanouts(args: argparse.Namespace, found: Findings) -> None:
    """The campaign fan-out on each database asked for, each in a child process (so its RSS
    is the fan-out's own)."""
    for run_name, store in FANOUT_RUNS.items():
        if run_name not in args.only:
            continue
        if store == "postgres" and (down := await postgres_reachable(args.postgres)):
            found.ok = False
            console.print(f"[red]  {run_name} failed:[/] PostgreSQL unreachable: {down}")
            continue
        started = time.monotonic()
        argv = [sys.executable, "-m", "bench.fanout", "--store", store, "--json"]
        child = await start(
            run_name,
            [*argv, "--postgres", args.postgres],
            env=child_env({}),
            log_dir=args.workdir,
            stdout_pipe=True,
        )
        try:
            line = await read_ready_line(child, prefix="RESULT", within=FANOUT_TIMEOUT_SECONDS)
        except BenchError as e:
            found.ok = False
            console.print(f"[red]  {run_name} failed:[/] {e}")
            continue
        finally:
            await child.stop()
        result = fanout_bench.FanoutResult(**json.loads(line))
        found.fanouts.append(result)
        console.print(
            f"  {run_name}: {result.rate:,.0f} deliveries/s, RSS peak growth "
            f"{result.rss_peak_growth_mb:+.1f} MB [dim]({time.monotonic() - started:.0f}s)[/]"
        )


async def priorities(args: argparse.Namespace, sinks: e2e.Sinks, found: Findings) -> None:
    """The emergency lane under a backlog, on each database asked for."""
    names = [name for name in priority_bench.RUNS if name in args.only]
    if not names or sinks.simulator_url is None:
        return
    for result in await priority_bench.run_all(args, names, sinks.simulator_url):
        found.priorities.append(result)
        if found.failed_run(result.name, result.error):
            continue
        p99 = result.percentile(result.latencies_ms, 0.99)
        console.print(
            f"  {result.name}: emergency hand-off p99 {p99:.1f} ms under a "
            f"{result.backlog:,} backlog [dim]({result.seconds:.0f}s)[/]"
        )


async def trackings(args: argparse.Namespace, found: Findings) -> None:
    """The open pixel's throughput on each database asked for."""
    names = [name for name in tracking_bench.RUNS if name in args.only]
    if not names:
        return
    for result in await tracking_bench.run_all(names, admin_dsn=args.postgres):
        found.trackings.append(result)
        if found.failed_run(result.store, result.error):
            continue
        console.print(
            f"  {result.store}: {result.per_second:,.0f} pixel fetches/s, p99 "
            f"{result.p99_ms:.1f} ms"
        )


async def analytics(args: argparse.Namespace, found: Findings) -> None:
    """Analytics query latency on each database asked for."""
    names = [name for name in analytics_bench.RUNS if name in args.only]
    if not names:
        return
    results = await analytics_bench.run_all(
        names, admin_dsn=args.postgres, events=args.analytics_events
    )
    for result in results:
        found.analytics.append(result)
        if found.failed_run(f"analytics-{result.store}", result.error):
            continue
        console.print(
            f"  analytics-{result.store}: p50 {result.p(0.5):.1f} ms, p99 "
            f"{result.p(0.99):.1f} ms over {result.events:,} delivery events"
        )


def print_findings(args: argparse.Namespace, found: Findings) -> None:
    """The tables."""
    if found.analytics:
        console.print(analytics_bench.table(found.analytics))
    if found.trackings:
        console.print(tracking_bench.table(found.trackings))
    if found.fanouts:
        console.print(fanout_bench.table(found.fanouts))
    if found.priorities:
        console.print(priority_bench.table(found.priorities))
    if found.results:
        console.print(e2e_table(found.results, recipients=args.recipients))
    table = ceiling_table(found.ceilings, found.results)
    if table is not None:
        console.print(table)
    for name, summary, path in found.profiles:
        console.print(f"py-spy samples of the {name} worker: {path}", highlight=False)
        for t in profile_tables(name, summary):
            console.print(t)


async def bench(args: argparse.Namespace) -> bool:
    """Run what ``args`` asks for, print the tables; return whether every run succeeded."""
    console.print(f"[bold]guestcomms bench[/]  {machine()}")
    console.print(f"recipients {args.recipients:,}; logs in {args.workdir}", highlight=False)
    found = Findings()
    scenarios = [s for s in e2e.SCENARIOS if s.name in args.only]
    needs_sink = CEILING in args.only or any(s.sink == "smtp" for s in scenarios)
    needs_simulator = any(s.account is not None for s in scenarios) or any(
        name in args.only for name in priority_bench.RUNS
    )
    async with contextlib.AsyncExitStack() as stack:
        sinks = e2e.Sinks()
        if needs_sink:
            sink, sink_port = await start_sink(args.workdir)
            stack.push_async_callback(sink.stop)
            sinks = dataclasses.replace(sinks, smtp_port=sink_port)
        if needs_simulator:
            simulator, simulator_url = await start_simulator(args.workdir)
            stack.push_async_callback(simulator.stop)
            sinks = dataclasses.replace(sinks, simulator_url=simulator_url)
        if CEILING in args.only and sinks.smtp_port is not None:
            await ceilings(args, sinks.smtp_port, found)
        if scenarios:
            await seed_and_run(args, scenarios, sinks, found)
        await fanouts(args, found)
        await priorities(args, sinks, found)
        await trackings(args, found)
        await analytics(args, found)
    print_findings(args, found)
    return found.ok


def main() -> None:
    """Entry point of ``python -m bench``."""
    args = parse_args()
    keep = args.out is not None or bool(args.profile)
    workdir = args.out or Path(tempfile.mkdtemp(prefix="gc-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    args.workdir = workdir
    started = time.monotonic()
    ok = False
    try:
        ok = asyncio.run(bench(args))
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
    finally:
        console.print(f"[dim]bench took {time.monotonic() - started:.0f}s[/]")
        if ok and not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            console.print(f"logs kept in {workdir}", highlight=False)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
