"""A worker killed with SIGKILL mid-send loses nothing; duplicates are bounded and traceable.

Real processes: ``guestcomms worker`` is started, killed with SIGKILL while sending 2,000
emails to a real SMTP server, and restarted. Every recipient must receive the email; a
recipient may receive it twice only if its delivery was in flight at the kill, and both
copies carry the same Message-ID, so the duplicate is detectable downstream.
"""

from __future__ import annotations

import asyncio
import collections
import email
import email.policy
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.messages.models import Delivery
from tests.smtp_server import SmtpTestServer
from tests.support import seed_deliveries

RECIPIENTS = 2000
BATCH_SIZE = 50
KILL_AFTER_RECEIVED = 400
DEADLINE_SECONDS = 120.0
GUESTCOMMS = Path(sys.executable).parent / "guestcomms"


def _worker(database_url: str, smtp: SmtpTestServer) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "GUESTCOMMS_ENVIRONMENT": "test",
        "GUESTCOMMS_DATABASE_URL": database_url,
        "GUESTCOMMS_SMTP_HOST": smtp.host,
        "GUESTCOMMS_SMTP_PORT": str(smtp.port),
        "GUESTCOMMS_EMAIL_FROM": "Planner <planner@wedding.example>",
        "GUESTCOMMS_BATCH_SIZE": str(BATCH_SIZE),
        "GUESTCOMMS_LEASE_SECONDS": "2",
        "GUESTCOMMS_POLL_INTERVAL_SECONDS": "0.1",
        "GUESTCOMMS_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [str(GUESTCOMMS), "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes started by the test, killed at the end whatever happens."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()


async def _wait(predicate: collections.abc.Callable[[], bool]) -> None:
    async with asyncio.timeout(DEADLINE_SECONDS):
        while not predicate():
            await asyncio.sleep(0.02)


@pytest.mark.timeout(180)
async def test_sigkill_mid_send_loses_nothing(
    database_url: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    """After SIGKILL and restart all 2,000 are sent; duplicates were in flight at the kill."""
    engine = create_engine(database_url)
    sessions = create_session_factory(engine)
    try:
        delivery_ids = await seed_deliveries(sessions, count=RECIPIENTS)
        with SmtpTestServer() as smtp:
            first = _worker(database_url, smtp)
            processes.append(first)
            await _wait(lambda: len(smtp.messages) >= KILL_AFTER_RECEIVED)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            async with sessions() as session:
                in_flight = set(
                    (
                        await session.scalars(
                            select(Delivery.id).where(Delivery.status == "sending")
                        )
                    ).all()
                )
            received_at_kill = len(smtp.messages)
            assert received_at_kill < RECIPIENTS, "the kill came after the send had finished"

            second = _worker(database_url, smtp)
            processes.append(second)

            async def all_sent() -> bool:
                async with sessions() as session:
                    count = await session.scalar(
                        select(func.count()).where(Delivery.status == "sent")
                    )
                return count == RECIPIENTS

            async with asyncio.timeout(DEADLINE_SECONDS):
                while not await all_sent():
                    await asyncio.sleep(0.2)
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=30) == 0
            received = list(smtp.messages)
    finally:
        await engine.dispose()

    by_recipient: dict[str, set[str]] = collections.defaultdict(set)
    copies: collections.Counter[str] = collections.Counter()
    for message in received:
        parsed = email.message_from_bytes(message.content, policy=email.policy.default)
        message_id = str(parsed["Message-ID"])
        copies[message_id] += 1
        by_recipient[message.rcpt_tos[0]].add(message_id)
    assert len(by_recipient) == RECIPIENTS, "a recipient never received the email"
    assert all(len(ids) == 1 for ids in by_recipient.values()), "copies differ in Message-ID"
    duplicated = {
        uuid.UUID(hex=mid.strip("<>").split("@")[0]) for mid, n in copies.items() if n > 1
    }
    assert duplicated <= in_flight, "a delivery not in flight at the kill was sent twice"
    assert len(received) - RECIPIENTS == sum(n - 1 for n in copies.values())
    assert len(received) - RECIPIENTS <= len(in_flight)
    assert set(delivery_ids) >= duplicated
