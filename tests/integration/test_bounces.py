"""The bounce listener: real DSNs and ARF reports over SMTP, applied to deliveries once each,
suppressing hard bounces and complaints; and SMTP sends using the VERP return path."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiosmtplib
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from guestcomms.channels.base import OutgoingEmail
from guestcomms.channels.events import ProviderEventType
from guestcomms.channels.smtp import SmtpProvider
from guestcomms.channels.verp import return_path
from guestcomms.cli import app as cli_app
from guestcomms.compliance.models import Suppression
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.engine.bounces import BounceListener, read_report
from guestcomms.inbound.models import InboundEventRecord
from guestcomms.messages.models import Delivery, DeliveryEvent
from guestcomms.organizations.models import Organization
from tests.smtp_server import HOST, SmtpTestServer, free_port
from tests.support import seed_deliveries

BOUNCE_DOMAIN = "bounces.guestcomms.example"
CLI_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.05
GUESTS = ("guest0@example.com", "guest1@example.com", "guest2@example.com")


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on a fresh database."""
    engine = create_engine(database_url)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def deliveries(sessions: async_sessionmaker[AsyncSession]) -> list[uuid.UUID]:
    """Three email deliveries to GUESTS, all handed to the SMTP relay (status sent)."""
    ids = await seed_deliveries(sessions, count=3)
    async with sessions() as session, session.begin():
        await session.execute(
            update(Delivery).where(Delivery.id.in_(ids)).values(status="sent", provider="smtp")
        )
    return ids


@pytest.fixture
async def listener(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[BounceListener]:
    """A started bounce listener on a free port of 127.0.0.1."""
    async with BounceListener(HOST, 0, sessions=sessions, bounce_domain=BOUNCE_DOMAIN) as started:
        yield started


def verp(delivery_id: uuid.UUID) -> str:
    """The return path a send of ``delivery_id`` used."""
    return return_path(delivery_id=delivery_id, bounce_domain=BOUNCE_DOMAIN)


def dsn(
    *, to: str, recipient: str, action: str, status: str, diagnostic: str, message_id: str
) -> bytes:
    """An RFC 3464 delivery status notification, as Postfix writes one."""
    return f"""\
From: Mail Delivery System <MAILER-DAEMON@mx.example.com>
To: {to}
Subject: Undelivered Mail Returned to Sender
Date: Sat, 12 Sep 2026 10:00:00 +0000
Message-ID: {message_id}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
 boundary="B0UNDARY"

--B0UNDARY
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.com.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

--B0UNDARY
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com
X-Postfix-Queue-ID: 4Z1abc
Arrival-Date: Sat, 12 Sep 2026 09:59:58 +0000

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mail.example.com
Diagnostic-Code: smtp; {diagnostic}

--B0UNDARY
Content-Type: text/rfc822-headers

From: Ana & Ben <hello@example.com>
To: {recipient}
Subject: You're invited!

--B0UNDARY--
""".replace("\n", "\r\n").encode()


def arf(*, to: str, recipient: str, message_id: str) -> bytes:
    """An RFC 5965 abuse report (a feedback loop's "this is spam")."""
    return f"""\
From: Feedback Loop <fbl@isp.example.net>
To: {to}
Subject: Abuse report
Date: Sat, 12 Sep 2026 11:00:00 +0000
Message-ID: {message_id}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
 boundary="ARF-PART"

--ARF-PART
Content-Type: text/plain

This is an email abuse report for an email message received from IP 192.0.2.1.

--ARF-PART
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Original-Mail-From: <{to}>
Original-Rcpt-To: <{recipient}>
Arrival-Date: Sat, 12 Sep 2026 10:30:00 +0000
Source-IP: 192.0.2.1

--ARF-PART
Content-Type: message/rfc822

From: Ana & Ben <hello@example.com>
To: {recipient}
Subject: You're invited!

Dear guest, join us.
--ARF-PART--
""".replace("\n", "\r\n").encode()


def hard_bounce(delivery_id: uuid.UUID, *, message_id: str = "<dsn-1@mx.example.com>") -> bytes:
    """A 5.1.1 "user unknown" DSN for the first guest, sent to ``delivery_id``'s VERP."""
    return dsn(
        to=verp(delivery_id),
        recipient=GUESTS[0],
        action="failed",
        status="5.1.1",
        diagnostic="550 5.1.1 <guest0@example.com>: Recipient address rejected: User unknown",
        message_id=message_id,
    )


async def send_report(listener: BounceListener, *, to: str, content: bytes) -> str:
    """Deliver ``content`` to the listener as an MTA does: null sender (``MAIL FROM:<>``),
    one recipient. Returns the text of the 250 reply to DATA."""
    async with aiosmtplib.SMTP(hostname=HOST, port=listener.port, timeout=10) as client:
        _, reply = await client.sendmail("", [to], content)
    return reply


async def status_of(sessions: async_sessionmaker[AsyncSession], delivery_id: uuid.UUID) -> str:
    """The delivery's status."""
    async with sessions() as session:
        status = await session.scalar(select(Delivery.status).where(Delivery.id == delivery_id))
    assert status is not None
    return status


async def history(sessions: async_sessionmaker[AsyncSession], delivery_id: uuid.UUID) -> list[str]:
    """The delivery's event types, oldest first."""
    async with sessions() as session:
        rows = await session.scalars(
            select(DeliveryEvent.type)
            .where(DeliveryEvent.delivery_id == delivery_id)
            .order_by(DeliveryEvent.id)
        )
        return list(rows)


async def suppressions(sessions: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    """Every suppressed email address, with its reason."""
    async with sessions() as session:
        rows = await session.execute(
            select(Suppression.address, Suppression.reason).where(Suppression.channel == "email")
        )
        return {row.address: row.reason for row in rows}


async def count(sessions: async_sessionmaker[AsyncSession], model: type[object]) -> int:
    """How many rows ``model``'s table holds."""
    async with sessions() as session:
        total = await session.scalar(select(func.count()).select_from(model))
    return int(total or 0)


async def test_hard_bounce_bounces_and_suppresses_once(
    sessions: async_sessionmaker[AsyncSession],
    deliveries: list[uuid.UUID],
    listener: BounceListener,
) -> None:
    """A 5.1.1 DSN ends the delivery as bounced and suppresses the address; the same DSN
    received again is applied once."""
    first = deliveries[0]
    await send_report(listener, to=verp(first), content=hard_bounce(first))
    await send_report(listener, to=verp(first), content=hard_bounce(first))

    assert await status_of(sessions, first) == "bounced"
    assert (await history(sessions, first)).count("bounced") == 1
    assert await suppressions(sessions) == {GUESTS[0]: "hard_bounce"}
    assert await count(sessions, InboundEventRecord) == 1
    async with sessions() as session:
        detail = await session.scalar(
            select(DeliveryEvent.detail).where(
                DeliveryEvent.delivery_id == first, DeliveryEvent.type == "bounced"
            )
        )
    assert detail is not None
    assert detail["provider"] == "smtp"
    assert detail["bounce_code"] == "5.1.1"
    assert "User unknown" in detail["reason"]


async def test_a_report_cannot_suppress_another_address(
    sessions: async_sessionmaker[AsyncSession],
    deliveries: list[uuid.UUID],
    listener: BounceListener,
) -> None:
    """A forged DSN to one delivery's return path naming another guest suppresses only the
    delivery's own address; the named one is kept in the raw record."""
    first = deliveries[0]
    forged = dsn(
        to=verp(first),
        recipient=GUESTS[1],
        action="failed",
        status="5.1.1",
        diagnostic="550 5.1.1 User unknown",
        message_id="<forged@attacker.example>",
    )
    await send_report(listener, to=verp(first), content=forged)

    assert await suppressions(sessions) == {GUESTS[0]: "hard_bounce"}
    async with sessions() as session:
        raw = await session.scalar(select(InboundEventRecord.raw))
    assert raw is not None
    assert raw["recipient"] == GUESTS[1]


async def test_delayed_dsn_is_a_soft_bounce(
    sessions: async_sessionmaker[AsyncSession],
    deliveries: list[uuid.UUID],
    listener: BounceListener,
) -> None:
    """A 4.2.2 mailbox-full "delayed" DSN joins the history without changing the status or
    suppressing anything."""
    second = deliveries[1]
    content = dsn(
        to=verp(second),
        recipient=GUESTS[1],
        action="delayed",
        status="4.2.2",
        diagnostic="452 4.2.2 Mailbox full",
        message_id="<dsn-2@mx.example.com>",
    )
    await send_report(listener, to=verp(second), content=content)

    assert await status_of(sessions, second) == "sent"
    assert await history(sessions, second) == [ProviderEventType.SOFT_BOUNCED.value]
    assert await suppressions(sessions) == {}


async def test_feedback_report_complains_and_suppresses(
    sessions: async_sessionmaker[AsyncSession],
    deliveries: list[uuid.UUID],
    listener: BounceListener,
) -> None:
    """An ARF abuse report marks the delivery complained and suppresses the address."""
    third = deliveries[2]
    content = arf(to=verp(third), recipient=GUESTS[2], message_id="<arf-1@isp.example.net>")
    await send_report(listener, to=verp(third), content=content)

    assert await status_of(sessions, third) == "complained"
    assert await history(sessions, third) == ["complained"]
    assert await suppressions(sessions) == {GUESTS[2]: "complaint"}


async def test_other_recipients_are_refused(
    sessions: async_sessionmaker[AsyncSession],
    deliveries: list[uuid.UUID],
    listener: BounceListener,
) -> None:
    """RCPT for anything but a VERP address of the bounce domain gets 550; nothing changes."""
    for address in (
        f"postmaster@{BOUNCE_DOMAIN}",
        f"bounces+dlv_{deliveries[0].hex}@elsewhere.example",
    ):
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await send_report(listener, to=address, content=hard_bounce(deliveries[0]))
        assert refused.value.recipients[0].code == 550
    assert await count(sessions, InboundEventRecord) == 0
    assert await status_of(sessions, deliveries[0]) == "sent"


async def test_unknown_delivery_is_accepted_and_ignored(
    sessions: async_sessionmaker[AsyncSession],
    deliveries: list[uuid.UUID],
    listener: BounceListener,
) -> None:
    """A DSN to a well-formed VERP address of no delivery gets 250 (no retries) and changes
    nothing."""
    unknown = uuid.uuid4()
    reply = await send_report(listener, to=verp(unknown), content=hard_bounce(unknown))
    assert reply == "2.0.0 Report received"
    assert await count(sessions, InboundEventRecord) == 0
    assert await count(sessions, DeliveryEvent) == 0
    assert await suppressions(sessions) == {}


async def test_store_failure_answers_451(tmp_path: Path) -> None:
    """When the report cannot be stored (here: a database without tables), the listener
    answers 451 so the MTA keeps the report and retries."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        async with BounceListener(
            HOST, 0, sessions=create_session_factory(engine), bounce_domain=BOUNCE_DOMAIN
        ) as broken:
            delivery = uuid.uuid4()
            with pytest.raises(aiosmtplib.SMTPDataError) as error:
                await send_report(broken, to=verp(delivery), content=hard_bounce(delivery))
            assert error.value.code == 451
    finally:
        await engine.dispose()


async def test_smtp_send_uses_the_verp_return_path(
    sessions: async_sessionmaker[AsyncSession], deliveries: list[uuid.UUID]
) -> None:
    """With a bounce domain, SmtpProvider's MAIL FROM is the delivery's VERP address, while
    the From header stays the sender's."""
    first = deliveries[0]
    async with sessions() as session:
        org = await session.scalar(select(Organization.id))
    assert org is not None
    item = OutgoingEmail(
        delivery_id=first,
        organization_id=org,
        idempotency_key=f"dlv_{first.hex}",
        message_id=f"<{first.hex}@example.com>",
        sender="Ana & Ben <hello@example.com>",
        recipient=GUESTS[0],
        recipient_name=None,
        subject="You're invited!",
        text="Dear guest, join us.",
    )
    with SmtpTestServer() as server:
        provider = SmtpProvider(host=server.host, port=server.port, bounce_domain=BOUNCE_DOMAIN)
        try:
            await provider.send(item)
        finally:
            await provider.close()
    [received] = server.messages
    assert received.mail_from == verp(first)
    assert b"From: Ana & Ben <hello@example.com>" in received.content


def test_dsn_without_status_uses_the_smtp_reply() -> None:
    """A failed DSN block with no Status is classified by its Diagnostic-Code's reply code."""
    content = dsn(
        to=verp(uuid.uuid4()),
        recipient=GUESTS[0],
        action="failed",
        status="",
        diagnostic="550 No such user here",
        message_id="<dsn-3@mx.example.com>",
    )
    [outcome] = read_report(content).outcomes
    assert outcome.type is ProviderEventType.BOUNCED
    assert outcome.recipient == GUESTS[0]
    assert outcome.status is None


def test_not_spam_feedback_is_no_complaint() -> None:
    """An ARF report of type not-spam yields no outcome."""
    content = arf(to=verp(uuid.uuid4()), recipient=GUESTS[2], message_id="<arf-2@isp.example>")
    content = content.replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam")
    assert read_report(content).outcomes == []


def test_non_standard_bounce_falls_back_to_flufl_bounce() -> None:
    """A qmail bounce (no DSN part) is still read: its address is a permanent failure."""
    content = b"""\
From: MAILER-DAEMON@mx.example.com
To: bounces@bounces.guestcomms.example
Subject: failure notice
Message-ID: <qmail-1@mx.example.com>

Hi. This is the qmail-send program at mx.example.com.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<guest0@example.com>:
192.0.2.7 does not like recipient.
Remote host said: 550 5.1.1 <guest0@example.com>... User unknown
Giving up on 192.0.2.7.

--- Below this line is a copy of the message.
"""
    report = read_report(content.replace(b"\n", b"\r\n"))
    [outcome] = report.outcomes
    assert outcome.type is ProviderEventType.BOUNCED
    assert outcome.recipient == GUESTS[0]
    assert outcome.status == "5.1.1"
    assert report.message_id == "<qmail-1@mx.example.com>"


def test_unrelated_mail_has_no_outcome() -> None:
    """An auto-reply sent to the return path is no bounce: no outcome, so nothing changes."""
    content = b"From: guest@example.com\r\nSubject: Out of office\r\n\r\nBack on Monday.\r\n"
    assert read_report(content).outcomes == []


async def test_stop_closes_idle_connections(tmp_path: Path) -> None:
    """Stopping the listener closes a connection an MTA left open, and returns promptly."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}")
    client = aiosmtplib.SMTP(hostname=HOST, timeout=10)
    try:
        listener = BounceListener(
            HOST, 0, sessions=create_session_factory(engine), bounce_domain=BOUNCE_DOMAIN
        )
        await listener.start()
        await client.connect(port=listener.port)
        await client.ehlo()
        await asyncio.wait_for(listener.stop(), timeout=5)
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await client.noop()
    finally:
        client.close()
        await engine.dispose()


def _cli() -> list[str]:
    beside_python = Path(sys.executable).parent / "guestcomms"
    found = str(beside_python) if beside_python.exists() else shutil.which("guestcomms")
    if found is None:
        pytest.fail("the guestcomms console script is not installed (pip install -e .)")
    return [found, "bounces", "--host", HOST]


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUESTCOMMS_")}
    env.update({"GUESTCOMMS_LOG_LEVEL": "WARNING", "COLUMNS": "200"}, **values)
    return env


def test_cli_refuses_to_start_without_a_bounce_domain(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`guestcomms bounces` without GUESTCOMMS_BOUNCE_DOMAIN prints one line and exits 1."""
    for name, value in _env(GUESTCOMMS_DATABASE_URL=sqlite_url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GUESTCOMMS_BOUNCE_DOMAIN", raising=False)
    # in-process, the command's logging set-up would bind loggers to the runner's stderr,
    # which is closed afterwards: later tests would log to a closed file
    monkeypatch.setattr("guestcomms.commands.support.configure_logging", lambda **_: None)
    result = CliRunner().invoke(cli_app, ["bounces", "--port", str(free_port())])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: bounce_domain is not set (GUESTCOMMS_BOUNCE_DOMAIN)"


async def test_cli_receives_a_bounce_until_sigterm(sqlite_url: str) -> None:
    """`guestcomms bounces` applies a DSN it receives and exits 0 on SIGTERM."""
    engine = create_engine(sqlite_url)
    sessions = create_session_factory(engine)
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *_cli(),
        "--port",
        str(port),
        env=_env(GUESTCOMMS_DATABASE_URL=sqlite_url, GUESTCOMMS_BOUNCE_DOMAIN=BOUNCE_DOMAIN),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        [delivery] = await seed_deliveries(sessions, count=1)
        async with sessions() as session, session.begin():
            await session.execute(update(Delivery).values(status="sent"))
        await asyncio.wait_for(_until_listening(port), timeout=CLI_TIMEOUT_SECONDS)
        async with aiosmtplib.SMTP(hostname=HOST, port=port, timeout=10) as client:
            await client.sendmail("", [verp(delivery)], hard_bounce(delivery))
        assert await status_of(sessions, delivery) == "bounced"
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT_SECONDS)
        await engine.dispose()
    assert process.returncode == 0, stderr.decode()
    assert f"receiving bounces for {BOUNCE_DOMAIN}" in stdout.decode()


async def _until_listening(port: int) -> None:
    while True:
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(POLL_SECONDS)
            continue
        writer.close()
        await writer.wait_closed()
        return
