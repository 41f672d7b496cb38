"""A minimal, fast SMTP sink: accepts every message, counts it, and throws it away.

Run it in its own process (``python -m bench.smtp_sink --port 0``) so that it does not share
an event loop or a core with the client it measures. It prints ``READY <port>`` once it
listens, and its final counts when it gets SIGTERM or SIGINT.

It speaks just enough ESMTP for aiosmtplib (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT)
and one extra verb for the benchmark, ``XSTAT``, answered with
``250 <messages> <bytes> <connections>``. It parses with plain byte searches on an
:class:`asyncio.Protocol`, on uvloop when installed, so that it is not the limit of what it
measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
from dataclasses import dataclass
from typing import cast

HOST = "127.0.0.1"
END_OF_DATA = b"\r\n.\r\n"
REPLIES = {
    b"EHLO": b"250-bench-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
    b"HELO": b"250 bench-sink\r\n",
    b"MAIL": b"250 OK\r\n",
    b"RCPT": b"250 OK\r\n",
    b"RSET": b"250 OK\r\n",
    b"NOOP": b"250 OK\r\n",
    b"DATA": b"354 End data with <CR><LF>.<CR><LF>\r\n",
    b"QUIT": b"221 Bye\r\n",
}
UNKNOWN_REPLY = b"500 Command not recognized\r\n"
STATS_TIMEOUT_SECONDS = 5.0


@dataclass(slots=True)
class SinkStats:
    """Counters since the sink started."""

    messages: int = 0
    bytes: int = 0
    connections: int = 0


class _SinkProtocol(asyncio.Protocol):
    """One client connection: a command state machine over a byte buffer."""

    def __init__(self, stats: SinkStats) -> None:
        self._stats = stats
        self._buffer = bytearray()
        self._in_data = False
        self._scanned = 0  # how far the DATA terminator search has got in the buffer
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)
        self._stats.connections += 1
        self._transport.write(b"220 bench-sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        replies: list[bytes] = []
        closing = False
        while not closing:
            if self._in_data:
                if not self._take_body():
                    break
                replies.append(b"250 OK queued\r\n")
                continue
            end = self._buffer.find(b"\r\n")
            if end < 0:
                break
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 2]
            reply, closing = self._command(line)
            replies.append(reply)
        if replies and self._transport is not None:
            self._transport.write(b"".join(replies))
            if closing:
                self._transport.close()

    def _take_body(self) -> bool:
        """Consume one message body if its terminator has arrived; return whether it had."""
        buffer = self._buffer
        if buffer.startswith(b".\r\n"):  # an empty body
            end, size = 0, 3
        else:
            end = buffer.find(END_OF_DATA, max(self._scanned - 4, 0))
            if end < 0:
                self._scanned = len(buffer)
                return False
            size = end + len(END_OF_DATA)
        self._stats.messages += 1
        self._stats.bytes += end
        del buffer[:size]
        self._in_data = False
        self._scanned = 0
        return True

    def _command(self, line: bytes) -> tuple[bytes, bool]:
        """The reply to one command line, and whether to close the connection after it."""
        verb = line[:5].upper().rstrip()
        if verb == b"DATA":
            self._in_data = True
            self._scanned = 0
        elif verb == b"XSTAT":
            s = self._stats
            return f"250 {s.messages} {s.bytes} {s.connections}\r\n".encode(), False
        return REPLIES.get(verb[:4], UNKNOWN_REPLY), verb == b"QUIT"


async def serve(port: int) -> None:
    """Listen on ``HOST:port`` (0 picks a free port) until SIGTERM or SIGINT."""
    stats = SinkStats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _SinkProtocol(stats), HOST, port, backlog=512)
    bound = server.sockets[0].getsockname()[1]
    print(f"READY {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    print(f"STATS {stats.messages} {stats.bytes} {stats.connections}", flush=True)


def read_stats(port: int, *, host: str = HOST) -> SinkStats:
    """Ask a running sink for its counters (blocking; a few milliseconds)."""
    with socket.create_connection((host, port), timeout=STATS_TIMEOUT_SECONDS) as sock:
        reader = sock.makefile("rb")
        reader.readline()  # the greeting
        sock.sendall(b"XSTAT\r\n")
        fields = reader.readline().split()
        sock.sendall(b"QUIT\r\n")
        reader.readline()
    if len(fields) != 4 or fields[0] != b"250":
        raise RuntimeError(f"unexpected XSTAT reply from the sink: {fields!r}")
    return SinkStats(messages=int(fields[1]), bytes=int(fields[2]), connections=int(fields[3]))


def main() -> None:
    """Entry point: ``python -m bench.smtp_sink [--port N] [--no-uvloop]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-uvloop", action="store_true", help="use the stdlib event loop")
    args = parser.parse_args()
    runner = asyncio.run
    if not args.no_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop  # noqa: PLC0415 - optional accelerator

            runner = uvloop.run
    try:
        runner(serve(args.port))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
