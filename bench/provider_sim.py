"""The project's provider simulator in its own process, with a counter the bench can read.

``python -m bench.provider_sim`` runs :class:`guestcomms.channels.simulator.ProviderSimulator`
(the routes tests and the demo use) with request recording off, on uvloop when installed,
on a free port, and prints ``READY <port>`` once it listens. It adds two routes for the
bench: ``GET /_bench/stats``, ``{"<provider>": requests received}``, and
``GET /_bench/marked``, ``{"<recipient>": arrival}`` for every request addressed to a
marked recipient (``urgent<n>@example.org``, the priority bench's emergencies; ``DELETE``
forgets them), the arrival
being ``time.monotonic()`` when the request reached the simulator: CLOCK_MONOTONIC, the same
clock in every process of the machine, so the bench can compare it with its own.

Why not ``python -m guestcomms.channels.simulator``: its ``main()`` ignores ``--host`` and
``--port`` (``_serve`` never passes them on, so it listens on a random port it only prints),
it offers no way to read its counters from another process, and it runs on the stdlib loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from aiohttp import web

from guestcomms.channels.simulator import ProviderSimulator

HOST = "127.0.0.1"
STATS_PATH = "/_bench/stats"
MARKED_PATH = "/_bench/marked"
MARKED = re.compile(rb"urgent\d+@example\.org")  # the priority bench's emergency recipients
STATS_TIMEOUT_SECONDS = 5.0
PROVIDERS = ("sendgrid", "resend", "mailgun", "postmark", "twilio", "vonage", "fcm", "webpush")


class _CountingSimulator(ProviderSimulator):
    """The simulator plus a read-only counters route."""

    def __init__(self) -> None:
        super().__init__(record=False)
        self.marked: dict[str, float] = {}  # recipient -> first arrival (monotonic)

    def application(self) -> web.Application:
        app = super().application()
        app.router.add_get(STATS_PATH, self._stats)
        app.router.add_get(MARKED_PATH, self._marked)
        app.router.add_delete(MARKED_PATH, self._forget_marked)
        app.middlewares.append(self._mark)
        return app

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({name: self.count(name) for name in PROVIDERS})

    async def _marked(self, request: web.Request) -> web.Response:
        return web.json_response(self.marked)

    async def _forget_marked(self, request: web.Request) -> web.Response:
        self.marked.clear()
        return web.Response(status=204)

    @web.middleware
    async def _mark(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        arrived = time.monotonic()
        if request.method == "POST":
            # read() caches the body, so the provider route reads it again for free
            for found in MARKED.findall(await request.read()):
                self.marked.setdefault(found.decode(), arrived)
        return await handler(request)


async def read_marked(base_url: str) -> dict[str, float]:
    """When each marked recipient's first request reached the simulator (monotonic)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=STATS_TIMEOUT_SECONDS) as client:
        response = await client.get(MARKED_PATH)
        response.raise_for_status()
        marked: dict[str, Any] = response.json()
    return {str(k): float(v) for k, v in marked.items()}


async def forget_marked(base_url: str) -> None:
    """Clear the marked arrivals (each priority run starts from none)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=STATS_TIMEOUT_SECONDS) as client:
        (await client.delete(MARKED_PATH)).raise_for_status()


async def read_counts(base_url: str) -> dict[str, int]:
    """Requests each simulated provider has received so far."""
    async with httpx.AsyncClient(base_url=base_url, timeout=STATS_TIMEOUT_SECONDS) as client:
        response = await client.get(STATS_PATH)
        response.raise_for_status()
        counts: dict[str, Any] = response.json()
    return {str(k): int(v) for k, v in counts.items()}


async def _serve(port: int) -> None:
    simulator = _CountingSimulator()
    await simulator.start(HOST, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {simulator.base_url.rsplit(':', 1)[1]}", flush=True)
    try:
        await stop.wait()
    finally:
        await simulator.stop()


def main() -> None:
    """Entry point: ``python -m bench.provider_sim [--port N] [--no-uvloop]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-uvloop", action="store_true", help="use the stdlib event loop")
    args = parser.parse_args()
    runner = asyncio.run
    if not args.no_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop  # noqa: PLC0415 - optional accelerator

            runner = uvloop.run
    runner(_serve(args.port))


if __name__ == "__main__":
    main()
