"""The project's provider simulator in its own process, with a counter the bench can read.

``python -m bench.provider_sim`` runs :class:`guestcomms.channels.simulator.ProviderSimulator`
(the routes tests and the demo use) with request recording off, on uvloop when installed,
on a free port, and prints ``READY <port>`` once it listens. It adds one route for the
bench, ``GET /_bench/stats``: ``{"<provider>": requests received}``.

Why not ``python -m guestcomms.channels.simulator``: its ``main()`` ignores ``--host`` and
``--port`` (``_serve`` never passes them on, so it listens on a random port it only prints),
it offers no way to read its counters from another process, and it runs on the stdlib loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any

import httpx
from aiohttp import web

from guestcomms.channels.simulator import ProviderSimulator

HOST = "127.0.0.1"
STATS_PATH = "/_bench/stats"
STATS_TIMEOUT_SECONDS = 5.0
PROVIDERS = ("sendgrid", "resend", "mailgun", "postmark", "twilio", "vonage", "fcm", "webpush")


class _CountingSimulator(ProviderSimulator):
    """The simulator plus a read-only counters route."""

    def application(self) -> web.Application:
        app = super().application()
        app.router.add_get(STATS_PATH, self._stats)
        return app

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({name: self.count(name) for name in PROVIDERS})


async def read_counts(base_url: str) -> dict[str, int]:
    """Requests each simulated provider has received so far."""
    async with httpx.AsyncClient(base_url=base_url, timeout=STATS_TIMEOUT_SECONDS) as client:
        response = await client.get(STATS_PATH)
        response.raise_for_status()
        counts: dict[str, Any] = response.json()
    return {str(k): int(v) for k, v in counts.items()}


async def _serve(port: int) -> None:
    simulator = _CountingSimulator(record=False)
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
