"""`guestcomms deliveries list|replay`: the dead letters from the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select, update

from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.messages.models import Delivery
from tests.support import seed_deliveries

GUESTCOMMS = Path(sys.executable).parent / "guestcomms"


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GUESTCOMMS_DATABASE_URL": database_url, "GUESTCOMMS_LOG_LEVEL": "WARNING"}
    return subprocess.run(  # noqa: PLW1510 - the exit code is asserted by each caller
        [str(GUESTCOMMS), *args], env=env, capture_output=True, text=True, timeout=60
    )


async def test_dead_letters_are_listed_and_replayed(sqlite_url: str) -> None:
    """list shows the dead delivery; replay queues it; a second replay is a one-line error."""
    engine = create_engine(sqlite_url)
    sessions = create_session_factory(engine)
    try:
        dead, alive = await seed_deliveries(sessions, count=2)
        async with sessions() as session, session.begin():
            await session.execute(
                update(Delivery)
                .where(Delivery.id == dead)
                .values(status="dead", attempts=8, last_error="TransientProviderError: 421 busy")
            )
        listed = _cli(sqlite_url, "deliveries", "list", "--org", "Seeded")
        replayed = _cli(sqlite_url, "deliveries", "replay", f"dlv_{dead.hex}")
        again = _cli(sqlite_url, "deliveries", "replay", f"dlv_{dead.hex}")
        malformed = _cli(sqlite_url, "deliveries", "replay", "msg_nope")
        async with sessions() as session:
            status = await session.scalar(select(Delivery.status).where(Delivery.id == dead))
    finally:
        await engine.dispose()
    assert listed.returncode == 0, listed.stderr
    assert f"dlv_{dead.hex}" in listed.stdout
    assert f"dlv_{alive.hex}" not in listed.stdout
    assert replayed.returncode == 0, replayed.stderr
    assert status == "queued"
    assert again.returncode == 1
    assert "only a dead delivery can be replayed" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert malformed.returncode == 1
    assert "Traceback" not in malformed.stderr


async def test_providers_add_and_list(sqlite_url: str) -> None:
    """providers add checks and stores an account; list shows it without its secret."""
    engine = create_engine(sqlite_url)
    try:
        await seed_deliveries(create_session_factory(engine), count=1)
    finally:
        await engine.dispose()
    added = _cli(
        sqlite_url,
        "providers",
        "add",
        "--org",
        "Seeded",
        "--name",
        "sms-main",
        "--kind",
        "twilio_sms",
        "--setting",
        "sender=+447911123456",
        "--credential",
        "account_sid=AC" + "0" * 32,
        "--credential",
        "auth_token=s3cret-token",
        "--rate",
        "10",
    )
    missing = _cli(
        sqlite_url, "providers", "add", "--org", "Seeded", "--name", "x", "--kind", "sendgrid"
    )
    listed = _cli(sqlite_url, "providers", "list", "--org", "Seeded")
    assert added.returncode == 0, added.stderr
    assert "prv_" in added.stdout
    assert missing.returncode == 1
    assert "api_key" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    assert listed.returncode == 0, listed.stderr
    assert "sms-main" in listed.stdout
    assert "twilio_sms" in listed.stdout
    assert "s3cret-token" not in listed.stdout + added.stdout
