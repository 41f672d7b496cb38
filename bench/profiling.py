"""Sample the worker process with py-spy while it sends, and summarise where its time went.

py-spy is a tool for the person running the bench, not a dependency of the project: install
it into the venv (``.venv/bin/pip install py-spy``) to use ``--profile``. It records the
raw collapsed-stack format (one line per distinct stack with its sample count, all threads,
idle time excluded); :func:`summarise` turns that into the tables the bench prints: samples
per thread, self time per library, self time per function and inclusive time of the
project's own functions.
"""

from __future__ import annotations

import asyncio
import linecache
import re
import signal
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import BenchError, Child, child_env, read_ready_line, start, venv_script

SAMPLE_RATE_HZ = 100
START_TIMEOUT_SECONDS = 15.0
_FRAME_LINE = re.compile(r":\d+\)$")
_FRAME_PARTS = re.compile(r"^(?P<function>.*) \((?P<path>.+):(?P<line>\d+)\)$")
# py-spy cannot always tell a thread blocked in C from one running C code. A leaf frame on
# one of these calls is a wait: aiosqlite's thread waiting for work, an idle thread pool, or
# the event loop itself (uvloop's C loop shows as its Python caller, Runner.run).
_WAITING_CALL = re.compile(r"\.(get|wait|acquire|select|poll|run_until_complete)\(")
# Where a leaf frame's file lives decides its library; the first matching prefix wins.
LIBRARIES = (
    ("guestcomms/", "guestcomms"),
    ("sqlalchemy/", "SQLAlchemy"),
    ("aiosqlite/", "aiosqlite (its thread)"),
    ("sqlite3/", "sqlite3"),
    ("asyncpg/", "asyncpg"),
    ("aiosmtplib/", "aiosmtplib"),
    ("aiohttp/", "aiohttp (HTTP client)"),
    ("yarl/", "aiohttp (HTTP client)"),
    ("multidict/", "aiohttp (HTTP client)"),
    ("phonenumbers/", "phonenumbers"),
    ("urllib/", "urllib (form encoding)"),
    ("email/", "email (stdlib MIME)"),
    ("jinja2/", "Jinja2"),
    ("markupsafe/", "Jinja2"),
    ("asyncio/", "asyncio"),
    ("uvloop/", "uvloop"),
    ("uvicorn/", "uvicorn"),
    ("structlog/", "structlog"),
    ("uuid", "uuid"),
    ("json/", "json"),
    ("html/parser", "html.parser"),
    ("re/", "re"),
    ("threading", "threading"),
    ("pydantic", "pydantic"),
    ("fastapi/", "FastAPI/Starlette"),
    ("starlette/", "FastAPI/Starlette"),
)


@dataclass
class ProfileSummary:
    """Sample counts from one recording."""

    total: int = 0
    idle: int = 0  # samples of threads waiting (excluded from every other count)
    threads: Counter[str] = field(default_factory=Counter)
    libraries: Counter[str] = field(default_factory=Counter)
    self_time: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)


def _frame_name(frame: str) -> str:
    # "claim_batch (guestcomms/db/queue.py:123)" -> "claim_batch (guestcomms/db/queue.py)"
    return _FRAME_LINE.sub(")", frame)


def _library(frame: str) -> str:
    location = frame.rpartition("(")[2]
    for prefix, name in LIBRARIES:
        if prefix in location:
            return name
    return "other"


def _is_waiting(frame: str) -> bool:
    """Whether a leaf frame ``function (path:line)`` sits on a blocking wait."""
    match = _FRAME_PARTS.match(frame)
    if match is None:
        return False
    relative, line = match["path"], int(match["line"])
    for root in sys.path:
        source = linecache.getline(str(Path(root) / relative), line)
        if source:
            return bool(_WAITING_CALL.search(source))
    return False


def summarise(path: Path) -> ProfileSummary:
    """Read a py-spy ``--format raw`` file into a :class:`ProfileSummary`."""
    summary = ProfileSummary()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        count = int(number)
        frames = stack.split(";")
        thread = "?"
        if frames[0].startswith("thread ("):
            thread = frames.pop(0).partition(": ")[2] or frames[0]
        if not frames:
            continue
        if _is_waiting(frames[-1]):
            summary.idle += count
            continue
        names = [_frame_name(f) for f in frames]
        summary.total += count
        summary.threads[thread] += count
        summary.libraries[_library(names[-1])] += count
        summary.self_time[names[-1]] += count
        for name in set(names):
            summary.inclusive[name] += count
    return summary


class Profiler:
    """``py-spy record`` attached to one process, from :meth:`start` to :meth:`stop`."""

    def __init__(self, *, pid: int, output: Path, rate: int = SAMPLE_RATE_HZ) -> None:
        self.pid = pid
        self.output = output
        self.rate = rate
        self._child: Child | None = None
        self._drain: asyncio.Task[tuple[bytes, bytes]] | None = None

    async def start(self) -> None:
        """Attach py-spy; return once it samples. ``BenchError`` if py-spy is missing."""
        self.output.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            venv_script("py-spy"),
            "record",
            "--pid",
            str(self.pid),
            "--rate",
            str(self.rate),
            "--format",
            "raw",
            "--threads",
            "--output",
            str(self.output),
        ]
        # py-spy reports on stderr; send it to stdout (the pipe) so we can see it start.
        self._child = await start(
            "py-spy",
            ["sh", "-c", 'exec "$@" 2>&1', "py-spy", *argv],
            env=child_env({}),
            log_dir=self.output.parent,
            stdout_pipe=True,
        )
        await read_ready_line(self._child, prefix="py-spy> Sampling", within=START_TIMEOUT_SECONDS)
        # Keep draining its output so that py-spy never blocks on a full pipe.
        self._drain = asyncio.create_task(self._child.process.communicate())

    async def stop(self) -> None:
        """Stop sampling (SIGINT makes py-spy write its file); idempotent, never raises."""
        if self._child is None:
            return
        child, self._child = self._child, None
        await child.stop(sig=signal.SIGINT, grace=15.0)
        if self._drain is not None:
            await asyncio.gather(self._drain, return_exceptions=True)

    def summary(self) -> ProfileSummary:
        """The recording, summarised; ``BenchError`` if py-spy wrote nothing."""
        if not self.output.exists():
            raise BenchError(f"py-spy wrote no profile to {self.output}")
        return summarise(self.output)
