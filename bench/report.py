"""The tables ``make bench`` prints (Rich), and the machine they were measured on."""

from __future__ import annotations

import os
import platform
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.ceiling import CeilingResult
from bench.e2e import E2EResult
from bench.profiling import ProfileSummary

SMTP_TARGET_RATIO = 0.70  # DESIGN.md: end to end >= 70% of the bare aiosmtplib client
FAN_OUT_TARGET = 50_000  # deliveries written per second
TOP_FUNCTIONS = 15
MIN_WIDTH = 190  # columns when the output is not a terminal (make, a pipe, a file)


def make_console() -> Console:
    """A console wide enough for the tables even when stdout is not a terminal."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=MIN_WIDTH)
    return console


def machine() -> str:
    """One line: cores, CPU model, Python, SQLite."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return (
        f"{os.cpu_count()} cores, {model}; Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}"
    )


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _seconds(value: float) -> str:
    return f"{value:.2f}"


def e2e_table(results: Sequence[E2EResult], *, recipients: int) -> Table:
    """End-to-end figures, one row per run."""
    table = Table(title=f"End to end: POST /v1/messages with {recipients:,} recipients")
    table.add_column("run", no_wrap=True)
    for name in ("database", "channel", "provider", "processes"):
        table.add_column(name)
    for name in (
        "import\ncontacts/s",
        "API accept\ns",
        "fan-out\ndeliveries/s",
        "end to end\ns",
        "end to end\nmsgs/s",
        "worker\nmsgs/s",
        "sent",
        "received",
        "not sent",
    ):
        table.add_column(name, justify="right")
    for r in results:
        s = r.scenario
        row = [
            s.name + (" (profiled)" if r.profiled else ""),
            s.store,
            s.channel,
            s.sink,
            s.processes,
        ]
        if r.error is not None:
            table.add_row(*row, f"[red]failed: {r.error.splitlines()[0][:100]}[/]")
            continue
        other = {k: v for k, v in r.counts.items() if k != "sent"}
        not_sent = ", ".join(f"{k} {v}" for k, v in sorted(other.items())) or "0"
        received = "-" if r.received is None else f"{r.received:,}"
        if r.receipt_mismatch:
            received = f"[red]{received}[/]"
        table.add_row(
            *row,
            _rate(r.recipients / r.import_seconds if r.import_seconds else None),
            _seconds(r.accept_seconds),
            _rate(r.fan_out_rate),
            _seconds(r.end_to_end_seconds),
            _rate(r.end_to_end_rate),
            _rate(r.worker_rate),
            f"{r.sent:,}",
            received,
            not_sent,
        )
    table.caption = (
        "accept: the POST's response time (all deliveries written in its transaction); "
        "end to end: from sending the POST to the last delivery recorded as sent; "
        "worker: steady rate from the first recorded batch to the last; "
        "received: by the SMTP sink or the provider simulator (must equal sent). "
        f"Targets: fan-out >= {FAN_OUT_TARGET:,}/s."
    )
    return table


def ceiling_table(ceilings: Sequence[CeilingResult], results: Sequence[E2EResult]) -> Table | None:
    """The raw SMTP ceiling, and each SMTP run as a share of the ceiling on the same loop."""
    if not ceilings:
        return None
    table = Table(title="SMTP: our figure beside the raw ceiling (bare aiosmtplib -> same sink)")
    for name in ("what", "event loop", "connections"):
        table.add_column(name)
    for name in ("messages", "seconds", "msgs/s", "share of ceiling"):
        table.add_column(name, justify="right")
    by_loop = {c.loop: c for c in ceilings}
    for c in ceilings:
        table.add_row(
            "ceiling: aiosmtplib client",
            c.loop,
            str(c.connections),
            f"{c.messages:,}",
            _seconds(c.seconds),
            _rate(c.rate),
            "100%",
        )
    for r in results:
        if r.scenario.sink != "smtp" or r.error is not None:
            continue
        # `serve` runs under uvicorn, which picks uvloop; `guestcomms worker` uses uvloop.run.
        loop = "uvloop"
        ceiling = by_loop.get(loop) or ceilings[0]
        for what, rate in (("end to end", r.end_to_end_rate), ("worker", r.worker_rate)):
            if rate is None:
                continue
            share = rate / ceiling.rate if ceiling.rate else 0.0
            colour = "green" if share >= SMTP_TARGET_RATIO else "red"
            table.add_row(
                f"{r.scenario.name}: {what}",
                loop,
                "pool",
                f"{r.sent:,}",
                _seconds(r.end_to_end_seconds) if what == "end to end" else "-",
                _rate(rate),
                f"[{colour}]{share:.0%}[/]",
            )
    table.caption = (
        f"Target: end to end >= {SMTP_TARGET_RATIO:.0%} of the ceiling on the same event loop "
        "(serve and `guestcomms worker` both run on uvloop)."
    )
    return table


def profile_tables(name: str, summary: ProfileSummary) -> list[Table]:
    """Where the profiled process spent its samples."""
    total = max(summary.total, 1)

    def share(n: int) -> str:
        return f"{n / total:.1%}"

    threads = Table(
        title=f"Profile of {name}: {summary.total:,} busy samples by thread "
        f"({summary.idle:,} more were waiting)"
    )
    threads.add_column("thread")
    threads.add_column("samples", justify="right")
    threads.add_column("share", justify="right")
    for thread, n in summary.threads.most_common():
        threads.add_row(thread, f"{n:,}", share(n))

    libraries = Table(title="Self time by library (leaf frame)")
    libraries.add_column("library")
    libraries.add_column("share", justify="right")
    for library, n in summary.libraries.most_common():
        libraries.add_row(library, share(n))

    leaves = Table(title=f"Top {TOP_FUNCTIONS} functions by self time")
    leaves.add_column("function (file)")
    leaves.add_column("self", justify="right")
    for frame, n in summary.self_time.most_common(TOP_FUNCTIONS):
        leaves.add_row(frame, share(n))

    ours = Table(title="guestcomms functions by inclusive time")
    ours.add_column("function (file)")
    ours.add_column("inclusive", justify="right")
    own = [(f, n) for f, n in summary.inclusive.most_common() if "guestcomms/" in f]
    for frame, n in own[:TOP_FUNCTIONS]:
        ours.add_row(frame, share(n))
    return [threads, libraries, leaves, ours]
