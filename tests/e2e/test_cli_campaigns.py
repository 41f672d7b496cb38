"""`guestcomms campaign create|preview|start|pause|resume|cancel|status` as a person runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from guestcomms.audit.models import AuditEntry
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.messages.models import Delivery, Message
from tests.support import seed_deliveries

GUESTCOMMS = Path(sys.executable).parent / "guestcomms"
GUESTS = 7


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GUESTCOMMS_DATABASE_URL": database_url,
        "GUESTCOMMS_LOG_LEVEL": "WARNING",
        "GUESTCOMMS_CAMPAIGN_BATCH_SIZE": "3",  # several batches, so the bar moves
        "COLUMNS": "200",
    }
    return subprocess.run(  # noqa: PLW1510 - the exit code is asserted by each caller
        [str(GUESTCOMMS), *args], env=env, capture_output=True, text=True, timeout=60
    )


async def _seed(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await seed_deliveries(create_session_factory(engine), count=GUESTS)
    finally:
        await engine.dispose()


async def _campaign_deliveries(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session:
            rows = await session.execute(
                select(Delivery.status, func.count())
                .join(Message, Message.id == Delivery.message_id)
                .where(Message.campaign_id.is_not(None))
                .group_by(Delivery.status)
            )
            return {row[0]: row[1] for row in rows}
    finally:
        await engine.dispose()


async def _audit_actions(database_url: str) -> list[str]:
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session:
            return list(await session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))
    finally:
        await engine.dispose()


async def test_create_preview_start_wait_pause_resume_and_cancel(sqlite_url: str) -> None:
    """A campaign made from the command line fans out with --wait, shows in status, holds
    and releases its scheduled deliveries, and cancels them; each change is audited."""
    await _seed(sqlite_url)
    created = _cli(
        sqlite_url, "campaign", "create", "--org", "Seeded", "--name", "Save the date",
        "--template", "t", "--local-time", "10:00", "--date", "2031-06-01",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    campaign = re.search(r"cmp_[0-9a-f]{32}", created.stdout)
    assert campaign is not None, created.stdout
    cid = campaign.group(0)
    preview = _cli(sqlite_url, "campaign", "preview", "--org", "Seeded", cid)
    assert preview.returncode == 0, preview.stderr
    assert f"{GUESTS} guest(s)" in preview.stdout
    assert "2031-06-01 10:00" in preview.stdout  # the seeded guests have no zone: UTC
    started = _cli(sqlite_url, "campaign", "start", "--org", "Seeded", cid, "--wait")
    assert started.returncode == 0, started.stderr
    assert f"completed: {GUESTS} of {GUESTS} guest(s), {GUESTS} deliveries" in started.stdout
    assert await _campaign_deliveries(sqlite_url) == {"scheduled": GUESTS}
    status = _cli(sqlite_url, "campaign", "status", "--org", "Seeded")
    assert status.returncode == 0, status.stderr
    assert cid in status.stdout
    assert "completed" in status.stdout
    assert f"scheduled {GUESTS}" in status.stdout
    paused = _cli(sqlite_url, "campaign", "pause", "--org", "Seeded", cid)
    assert paused.returncode == 0, paused.stderr
    assert await _campaign_deliveries(sqlite_url) == {"held": GUESTS}
    resumed = _cli(sqlite_url, "campaign", "resume", "--org", "Seeded", cid)
    assert resumed.returncode == 0, resumed.stderr
    assert f"completed: {GUESTS} deliveries released" in resumed.stdout
    cancelled = _cli(sqlite_url, "campaign", "cancel", "--org", "Seeded", cid)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"cancelled: {GUESTS} deliveries cancelled" in cancelled.stdout
    assert await _campaign_deliveries(sqlite_url) == {"cancelled": GUESTS}
    # each change is in the audit log, and the log verifies
    assert await _audit_actions(sqlite_url) == [
        f"campaign.{action}" for action in ("create", "start", "pause", "resume", "cancel")
    ]
    verified = _cli(sqlite_url, "audit", "verify", "--org", "Seeded")
    assert verified.returncode == 0, verified.stderr
    assert "audit log OK: 5 entries verified" in verified.stdout


async def test_bad_input_is_one_line_naming_the_problem(sqlite_url: str) -> None:
    """A bad --var, filter or template is one line on stderr and exit 1."""
    await _seed(sqlite_url)
    base = ["campaign", "create", "--org", "Seeded", "--name", "x", "--template", "t"]
    cases = [
        (["--var", "novalue"], "--var takes NAME=VALUE"),
        (["--filter", 'tags has "a" and'], "filter:"),
        (["--template", "nope"], "no template named 'nope'"),
    ]
    for extra, expected in cases:
        result = _cli(sqlite_url, *base, *extra)
        assert result.returncode == 1, (extra, result.stdout)
        assert expected in result.stderr, (extra, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
