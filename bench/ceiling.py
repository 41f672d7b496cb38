"""The raw SMTP ceiling: a bare aiosmtplib client sending pre-built messages to the sink.

Run as a child process (``python -m bench.ceiling --port P ...``) so that it has a fresh
interpreter and an event loop of its own choosing, as the server processes do. It builds
the messages first (not timed): a few hundred distinct invitations rendered and built with
the project's own renderer and MIME builder, each copied with a unique Message-ID up to the
number asked for, so every message has the size and shape of what the worker sends. Then
it opens ``--connections`` connections (not timed) and sends every message over them, one
transaction at a time per connection, and prints ``RESULT <json>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import aiosmtplib

from bench import content
from guestcomms.channels.base import OutgoingEmail
from guestcomms.channels.mime import build_email_bytes
from guestcomms.templates.sandbox import TemplateRenderer, build_context

SENDER = "noreply@guestcomms.localhost"
FROM_HEADER = f"Guestcomms <{SENDER}>"
DISTINCT_BODIES = 200  # built with the real MIME builder; the rest are copies
MESSAGE_ID_DOMAIN = b"@bench.ceiling>"
SMTP_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class CeilingResult:
    """One ceiling run."""

    loop: str
    connections: int
    messages: int
    seconds: float
    mean_bytes: int

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.messages / self.seconds if self.seconds > 0 else 0.0


def prebuild(count: int) -> list[tuple[str, bytes]]:
    """``count`` ``(recipient, message bytes)`` pairs, each with a unique Message-ID."""
    renderer = TemplateRenderer()
    rows = content.guests(count)
    bases = []
    for row in rows[:DISTINCT_BODIES]:
        rendered = renderer.render(
            key="ceiling",
            subject=content.SUBJECT,
            html=content.HTML,
            text=content.TEXT,
            context=build_context(contact=row, variables=content.VARIABLES),
        )
        item = OutgoingEmail(
            delivery_id=uuid.uuid4(),
            organization_id=uuid.uuid4(),
            idempotency_key="ceiling",
            message_id=f"<base{MESSAGE_ID_DOMAIN.decode()}",
            sender=FROM_HEADER,
            recipient=row["email"],
            recipient_name=f"{row['first_name']} {row['last_name']}",
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
        )
        bases.append(build_email_bytes(item))
    marker = b"<base" + MESSAGE_ID_DOMAIN
    return [
        (
            row["email"],
            bases[i % len(bases)].replace(marker, f"<{i:08d}".encode() + MESSAGE_ID_DOMAIN),
        )
        for i, row in enumerate(rows)
    ]


async def _sender(client: aiosmtplib.SMTP, messages: Iterator[tuple[str, bytes]]) -> int:
    sent = 0
    for recipient, data in messages:  # the iterator is shared: each item goes to one sender
        await client.sendmail(SENDER, [recipient], data)
        sent += 1
    return sent


async def measure(*, port: int, count: int, connections: int, loop_name: str) -> CeilingResult:
    """Send ``count`` pre-built messages over ``connections`` connections; time the sending."""
    messages = prebuild(count)
    clients = [
        aiosmtplib.SMTP(
            hostname="127.0.0.1",
            port=port,
            local_hostname="bench.localhost",
            timeout=SMTP_TIMEOUT_SECONDS,
            start_tls=False,
        )
        for _ in range(connections)
    ]
    await asyncio.gather(*(c.connect() for c in clients))
    shared = iter(messages)
    started = time.perf_counter()
    sent = await asyncio.gather(*(_sender(c, shared) for c in clients))
    seconds = time.perf_counter() - started
    await asyncio.gather(*(c.quit() for c in clients))
    return CeilingResult(
        loop=loop_name,
        connections=connections,
        messages=sum(sent),
        seconds=seconds,
        mean_bytes=sum(len(m) for _, m in messages) // max(len(messages), 1),
    )


def main() -> None:
    """Entry point: ``python -m bench.ceiling --port P --messages N --connections C``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args()
    coroutine = measure(
        port=args.port, count=args.messages, connections=args.connections, loop_name=args.loop
    )
    if args.loop == "uvloop":
        import uvloop  # noqa: PLC0415 - only when asked for

        result = uvloop.run(coroutine)
    else:
        result = asyncio.run(coroutine)
    print("RESULT " + json.dumps(asdict(result)), flush=True)


if __name__ == "__main__":
    main()
