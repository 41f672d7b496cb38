"""A lean HTTP/1.1 client for the benches: one keep-alive connection, one request at a time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from bench.procs import BenchError


class KeepAlive:
    """One keep-alive HTTP/1.1 connection, one request at a time, as ``wrk`` drives a server.

    The bench's client shares the machine's cores with the server and the database, so it must
    cost little: httpx spends ~1.8 ms of CPU per request with one connection and ~5 ms with 32
    (its pool), so it measured itself (~180 requests/s against an app that does nothing). This
    costs ~70 us. It reads only what our answers hold: a status line, headers with
    ``Content-Length``, and that many bytes of body.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> KeepAlive:
        """Connect to ``host:port``."""
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def get(self, path: str, *, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """``GET path`` (already quoted) with ``headers``: the status and the body."""
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n{lines}\r\n".encode())
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *fields = head[:-4].split(b"\r\n")
        length = next(
            (int(h.split(b":", 1)[1]) for h in fields if h.lower().startswith(b"content-length:")),
            None,
        )
        if length is None:
            raise BenchError(f"a response without Content-Length: {head!r}")
        body = await self._reader.readexactly(length)
        return int(status_line.split(b" ", 2)[1]), body

    async def close(self) -> None:
        """Close the connection."""
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
