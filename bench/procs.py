"""Child processes for the benchmark: the ``guestcomms`` CLI, the SMTP sink, the provider
simulator, py-spy.

Every child is stopped the same way, even when a run fails: SIGTERM, a bounded wait, then
SIGKILL. Output goes to a log file per child (a pipe nobody reads would fill and stall it),
so a failure can show the last lines of what the child said.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

STOP_GRACE_SECONDS = 10.0  # between SIGTERM and SIGKILL
CLI_TIMEOUT_SECONDS = 120.0  # one `guestcomms keys create` (it also migrates the database)
READY_POLL_SECONDS = 0.1
LOG_TAIL_LINES = 25
SINK_START_SECONDS = 15.0


class BenchError(Exception):
    """A benchmark step failed; the message says which and why."""


def venv_script(name: str) -> str:
    """The path of console script ``name`` beside this interpreter, else on ``PATH``."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise BenchError(f"the {name} command is not installed (pip install -e .)")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """Our environment without any ``GUESTCOMMS_*`` variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUESTCOMMS_")}
    env.update(extra)
    return env


@dataclass
class Child:
    """A running child process and the file its output goes to."""

    name: str
    process: asyncio.subprocess.Process
    log_path: Path

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    @property
    def alive(self) -> bool:
        """Whether the process has not exited yet."""
        return self.process.returncode is None

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines the child wrote."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def died(self) -> BenchError:
        """The error to raise when the child exited before it should have."""
        return BenchError(f"{self.name} exited with code {self.process.returncode}:\n{self.tail()}")

    async def stop(self, *, grace: float = STOP_GRACE_SECONDS, sig: int = signal.SIGTERM) -> None:
        """Send ``sig``, wait up to ``grace`` seconds, then kill. Never raises."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)
            try:
                await asyncio.wait_for(self.process.wait(), timeout=grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), timeout=grace)


async def start(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_dir: Path,
    stdout_pipe: bool = False,
) -> Child:
    """Start ``argv`` with its stderr (and stdout, unless ``stdout_pipe``) in a log file."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *argv,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if stdout_pipe else log,
            stderr=log,
        )
    return Child(name=name, process=process, log_path=log_path)


async def run_cli(*args: str, env: Mapping[str, str], within: float = CLI_TIMEOUT_SECONDS) -> str:
    """Run ``guestcomms *args`` to completion and return its stdout; ``BenchError`` if it fails."""
    process = await asyncio.create_subprocess_exec(
        venv_script("guestcomms"),
        *args,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise BenchError(f"guestcomms {' '.join(args)} took over {within:.0f}s") from None
    if process.returncode != 0:
        raise BenchError(
            f"guestcomms {' '.join(args)} exited {process.returncode}: {err.decode().strip()}"
        )
    return out.decode()


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    *,
    what: str,
    within: float,
    children: Sequence[Child] = (),
) -> None:
    """Poll ``check`` until it is true; ``BenchError`` on timeout or if a child dies first."""
    deadline = time.monotonic() + within
    while True:
        for child in children:
            if not child.alive:
                raise child.died()
        with contextlib.suppress(httpx.TransportError, OSError):
            if await check():
                return
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {c.name}:\n{c.tail()}" for c in children)
            raise BenchError(f"timed out after {within:.0f}s waiting for {what}\n{tails}")
        await asyncio.sleep(READY_POLL_SECONDS)


async def http_ready(base_url: str, *, children: Sequence[Child], within: float) -> None:
    """Wait until ``GET /readyz`` answers 200 (the API runs and reaches its database)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=2.0) as client:

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await wait_until(ready, what=f"{base_url}/readyz", within=within, children=children)


async def read_ready_line(child: Child, *, prefix: str, within: float) -> str:
    """Read the child's stdout until a line starts with ``prefix``; return the rest of it."""
    stream = child.process.stdout
    if stream is None:
        raise BenchError(f"{child.name} was not started with a stdout pipe")
    deadline = time.monotonic() + within
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BenchError(f"{child.name} did not say {prefix!r} within {within:.0f}s")
        try:
            line = await asyncio.wait_for(stream.readline(), timeout=remaining)
        except TimeoutError:
            continue
        if not line:
            await child.process.wait()
            raise child.died()
        text = line.decode().strip()
        if text.startswith(prefix):
            return text[len(prefix) :].strip()


async def start_ready(name: str, module: str, log_dir: Path) -> tuple[Child, int]:
    """Start ``python -m <module> --port 0`` in its own process; wait for its
    ``READY <port>`` line and return it and the port."""
    child = await start(
        name,
        [sys.executable, "-m", module, "--port", "0"],
        env=child_env({}),
        log_dir=log_dir,
        stdout_pipe=True,
    )
    try:
        port = int(await read_ready_line(child, prefix="READY", within=SINK_START_SECONDS))
    except BaseException:
        await child.stop()
        raise
    return child, port


async def start_sink(log_dir: Path) -> tuple[Child, int]:
    """Start :mod:`bench.smtp_sink` in its own process; return it and its port."""
    return await start_ready("smtp-sink", "bench.smtp_sink", log_dir)


async def start_simulator(log_dir: Path) -> tuple[Child, str]:
    """Start :mod:`bench.provider_sim` in its own process; return it and its base URL."""
    child, port = await start_ready("provider-simulator", "bench.provider_sim", log_dir)
    return child, f"http://127.0.0.1:{port}"
