"""The bounce listener: a small SMTP server that receives bounce and complaint reports.

SMTP sends with a bounce domain set use a VERP envelope sender per delivery
(:mod:`guestcomms.channels.verp`), so every report comes back to
``bounces+dlv_<hex>@<bounce domain>`` and names its delivery through the address it was sent
to. The listener accepts mail only for such addresses (550 for any other recipient), reads
each message into :class:`Outcome` values, and applies them as ``smtp`` provider events with
:class:`~guestcomms.inbound.service.InboundService`: idempotently, forward only, suppressing
the delivery's own address on hard bounces and complaints.

The address a report names is kept in the event's raw record but never used for suppression:
the VERP address already identifies the delivery exactly (one recipient per SMTP
transaction), while the body is whatever the sender wrote. Anyone who received one of our
emails can read its Return-Path and mail a forged report to it; trusting the body would let
them suppress any other guest's address, where now they can only affect their own delivery.

How a message is read, most authoritative first:

    multipart/report; report-type=feedback-report (ARF)    complained, per Original-Rcpt-To
    message/delivery-status part (RFC 3464 DSN)             per recipient, by the table below
    anything else                                           flufl.bounce's detectors

Replies: 250 once the message is read and stored, even when it matches no delivery or says
nothing we act on (the remote MTA must not retry it); 451 when it could not be stored
(database down, or a bug of ours), so the remote MTA retries later.
"""

from __future__ import annotations

import asyncio
import email
import email.parser
import email.utils
import hashlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from types import TracebackType
from typing import Any, Self

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session
from flufl.bounce import all_failures
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guestcomms.channels.base import MAX_ERROR_DETAIL_CHARS
from guestcomms.channels.events import (
    ProviderEvent,
    ProviderEventType,
    enhanced_status_code,
    stable_event_id,
)
from guestcomms.channels.verp import DEFAULT_LOCAL_PART, delivery_from_return_path
from guestcomms.compliance.repository import SuppressionRepository
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.errors import ConfigError
from guestcomms.inbound.bounce_repository import BounceRepository
from guestcomms.inbound.repository import InboundRepository
from guestcomms.inbound.service import InboundService

__all__ = ["BounceListener", "BounceReport", "Outcome", "events_for", "read_report"]

log = structlog.get_logger("guestcomms.bounces")
T = ProviderEventType

PROVIDER = "smtp"  # bounces belong to SMTP sends; events are keyed by (provider, event_id)
DATA_SIZE_LIMIT_BYTES = 10 * 1024 * 1024  # reports quote the original message; ours are small
IDLE_TIMEOUT_SECONDS = 300.0  # RFC 5321 4.5.3.2: a server waits at least 5 minutes
TEXT_SCAN_LIMIT_CHARS = 64 * 1024  # how much of a non-standard bounce's text we search for a code

ACCEPTED = "250 2.0.0 Report received"
RECIPIENT_OK = "250 2.1.5 OK"
NOT_OURS = "550 5.1.1 No such mailbox: this server only receives bounces"
TRY_LATER = "451 4.3.0 Temporary failure, please try again later"

# RFC 3464 (Action, class of Status) -> our event. The class is the first digit of the
# enhanced status code ("5" of "5.1.1"), None when the report gives none we can read.
# Actions not listed ("relayed", "expanded", unknown words) report no outcome: no event.
_DSN_OUTCOMES: dict[tuple[str, str | None], ProviderEventType] = {
    ("failed", "5"): T.BOUNCED,  # permanent: no such mailbox, refused for good
    ("failed", "4"): T.SOFT_BOUNCED,  # the MTA gave up on a temporary failure (mailbox full)
    ("failed", None): T.FAILED,  # not delivered, but no evidence to suppress the address on
    ("delayed", "4"): T.SOFT_BOUNCED,  # still being retried (greylisting, mailbox full)
    ("delayed", "5"): T.SOFT_BOUNCED,  # contradictory; "delayed" wins: it is still retried
    ("delayed", None): T.SOFT_BOUNCED,
    ("delivered", "2"): T.DELIVERED,  # a success notice, when one was asked for
    ("delivered", None): T.DELIVERED,
}
# Action words as MTAs write them -> the RFC 3464 action (opensmtpd writes "error").
_ACTIONS = {"failed": "failed", "error": "failed", "delayed": "delayed", "delivered": "delivered"}
# ARF Feedback-Type values that are not a complaint about our mail (RFC 6650).
_NOT_COMPLAINTS = frozenset({"not-spam"})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a report says happened to one original recipient."""

    type: ProviderEventType
    recipient: str | None
    status: str | None = None  # the enhanced status code, e.g. "5.1.1"
    diagnostic: str | None = None  # Diagnostic-Code, or the ARF Feedback-Type
    action: str | None = None  # the DSN Action, "feedback" for ARF, "heuristic" for flufl


@dataclass(frozen=True, slots=True)
class BounceReport:
    """One received report: its identity, when it happened, and its outcomes."""

    message_id: str  # the report's Message-ID, else a hash of its bytes
    occurred_at: datetime | None
    outcomes: list[Outcome] = field(default_factory=list)


def read_report(content: bytes) -> BounceReport:
    """Parse a received message into its outcomes (possibly none). Pure apart from a log line
    when a heuristic detector fails; a malformed message gives no outcomes, not an error."""
    message = email.message_from_bytes(content)
    message_id = _clean(message.get("Message-ID"))
    return BounceReport(
        message_id=message_id or "sha256:" + hashlib.sha256(content).hexdigest(),
        occurred_at=_date(message.get("Date")),
        outcomes=_outcomes(message),
    )


def events_for(report: BounceReport, *, delivery_id: uuid.UUID, rcpt: str) -> list[ProviderEvent]:
    """The report's outcomes as ``smtp`` events for the delivery the VERP address ``rcpt``
    names. Event ids hash the report's Message-ID, the delivery, the recipient and the type,
    so the same report received twice yields the same ids. ``recipient`` is left unset, so a
    suppression applies to the delivery's own address (see the module docstring)."""
    ref = to_public(IdKind.DELIVERY, delivery_id)
    events: list[ProviderEvent] = []
    for outcome in report.outcomes:
        raw = {
            "report_message_id": report.message_id,
            "return_path": rcpt,
            "recipient": outcome.recipient,
            "action": outcome.action,
            "status": outcome.status,
            "diagnostic": outcome.diagnostic,
        }
        event_id = stable_event_id(
            report.message_id, ref, outcome.recipient or "", outcome.type.value
        )
        events.append(
            ProviderEvent(
                type=outcome.type,
                provider=PROVIDER,
                recipient=None,  # the delivery's address; the reported one is in raw
                occurred_at=report.occurred_at,
                event_id=event_id,
                reason=outcome.diagnostic,
                bounce_code=outcome.status,
                delivery_ref=ref,
                raw=raw,
            )
        )
    return events


def _outcomes(message: Message) -> list[Outcome]:
    if _report_type(message) == "feedback-report":
        return _complaints(message)
    dsn = _dsn_outcomes(message)
    return dsn if dsn is not None else _heuristic_outcomes(message)


def _report_type(message: Message) -> str:
    if message.get_content_type() != "multipart/report":
        return ""
    value = message.get_param("report-type")
    if isinstance(value, tuple):  # an RFC 2231 encoded parameter
        value = email.utils.collapse_rfc2231_value(value)
    return str(value or "").strip().lower()


def _complaints(message: Message) -> list[Outcome]:
    """One ``complained`` outcome per Original-Rcpt-To of each feedback report (one with
    no recipient named is still a complaint: the delivery's contact is the recipient)."""
    outcomes: list[Outcome] = []
    for fields in _field_blocks(message, "message/feedback-report"):
        feedback = (_clean(fields.get("Feedback-Type")) or "abuse").lower()
        if feedback in _NOT_COMPLAINTS:
            continue
        named = [_address(r) for r in fields.get_all("Original-Rcpt-To", [])]
        recipients: list[str | None] = [r for r in named if r] or [None]
        for recipient in recipients:
            outcomes.append(
                Outcome(T.COMPLAINED, recipient, diagnostic=feedback, action="feedback")
            )
    return outcomes


def _dsn_outcomes(message: Message) -> list[Outcome] | None:
    """Outcomes of every per-recipient block of every delivery-status part; None when the
    message has no such part (it is not an RFC 3464 report)."""
    blocks = _field_blocks(message, "message/delivery-status")
    if not blocks:
        return None
    outcomes: list[Outcome] = []
    for fields in blocks:
        word = (_clean(fields.get("Action")) or "").split(" ", 1)[0].lower()
        action = _ACTIONS.get(word)
        if action is None:  # the per-message block, or relayed / expanded
            continue
        diagnostic = _clean(fields.get("Diagnostic-Code"))
        status = enhanced_status_code(_clean(fields.get("Status")), diagnostic)
        kind = _DSN_OUTCOMES[(action, _status_class(status, diagnostic))]
        recipient = _recipient(fields.get("Original-Recipient")) or _recipient(
            fields.get("Final-Recipient")
        )
        outcomes.append(Outcome(kind, recipient, status, _capped(diagnostic), action))
    return outcomes


def _heuristic_outcomes(message: Message) -> list[Outcome]:
    """flufl.bounce's detectors for bounces in no standard format (old qmail, Exchange...).

    A detector that fails on a strange message finds nothing: retrying would not help.
    """
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # heuristic third-party parsers, not hardened against every input
        log.warning("bounces.detector_failed", exc_info=True)
        return []
    found = [(T.BOUNCED, a) for a in sorted(permanent)]
    found += [(T.SOFT_BOUNCED, a) for a in sorted(temporary - permanent)]
    # a code in the text can only be attributed when the bounce is about one recipient
    code = enhanced_status_code(_text_of(message)) if len(found) == 1 else None
    return [
        Outcome(
            kind,
            address.decode("ascii"),
            status=code if code and code[0] == ("5" if kind is T.BOUNCED else "4") else None,
            action="heuristic",
        )
        for kind, address in found
    ]


def _field_blocks(message: Message, content_type: str) -> list[Message]:
    """The header blocks of every part of ``content_type`` (the parser reads a
    message/delivery-status or message/feedback-report body as a list of them)."""
    blocks: list[Message] = []
    for part in _parts_of(message, content_type):
        payload = part.get_payload()
        if isinstance(payload, list):
            blocks.extend(p for p in payload if isinstance(p, Message))
        elif isinstance(payload, str):  # a transfer-encoded body the parser left as text
            raw = part.get_payload(decode=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else payload
            text = text.replace("\r\n", "\n")
            parser = email.parser.HeaderParser()
            blocks.extend(parser.parsestr(chunk) for chunk in text.split("\n\n") if chunk.strip())
    return blocks


def _parts_of(message: Message, content_type: str) -> Iterator[Message]:
    return (part for part in message.walk() if part.get_content_type() == content_type)


def _text_of(message: Message) -> str:
    chunks: list[str] = []
    for part in _parts_of(message, "text/plain"):
        raw = part.get_payload(decode=True)
        if isinstance(raw, bytes):
            try:
                chunks.append(raw.decode(part.get_content_charset() or "utf-8", "replace"))
            except LookupError:  # a charset Python does not know
                chunks.append(raw.decode("latin-1"))
    return "\n".join(chunks)[:TEXT_SCAN_LIMIT_CHARS]


def _status_class(status: str | None, diagnostic: str | None) -> str | None:
    if status:
        return status[0]
    # no enhanced code anywhere: the basic SMTP reply of "smtp; 550 User unknown" still tells
    reply = (diagnostic or "").partition(";")[2].strip()[:3]
    return reply[0] if reply.isdigit() and reply[0] in "245" else None


def _recipient(value: str | None) -> str | None:
    """The address of an ``rfc822; someone@example.org`` field (other address types: None)."""
    kind, separator, address = (_clean(value) or "").partition(";")
    if not separator or kind.strip().lower() != "rfc822":
        return None
    return _address(address)


def _address(value: str | None) -> str | None:
    address = (_clean(value) or "").strip("<> ")
    return address if "@" in address else None


def _clean(value: Any) -> str | None:
    """A header value with folding and runs of whitespace collapsed, or None if blank."""
    text = " ".join(str(value).split()) if value is not None else ""
    return text or None


def _capped(text: str | None) -> str | None:
    return text[:MAX_ERROR_DETAIL_CHARS] if text else None


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class BounceHandler:
    """aiosmtpd handler: accepts our VERP recipients and stores what each report says."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        bounce_domain: str,
        local_part: str = DEFAULT_LOCAL_PART,
    ) -> None:
        self._sessions = sessions
        self._domain = bounce_domain
        self._local_part = local_part

    def delivery_of(self, address: str) -> uuid.UUID | None:
        """The delivery a recipient address names, None if it is not one of our VERP ones."""
        return delivery_from_return_path(
            address, bounce_domain=self._domain, local_part=self._local_part
        )

    async def handle_RCPT(  # noqa: N802 - aiosmtpd hook names
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Accept a VERP address of the bounce domain; refuse every other with 550."""
        if self.delivery_of(address) is None:
            return NOT_OURS
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return RECIPIENT_OK

    async def handle_DATA(  # noqa: N802 - aiosmtpd hook names
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        """Read and store the report: 250 when done (matched or not), 451 when it failed."""
        try:
            await self._receive(envelope.original_content or b"", envelope.rcpt_tos)
        except (SQLAlchemyError, OSError, TimeoutError) as e:
            log.warning("bounces.store_failed", error=f"{type(e).__name__}: {e}")
            return TRY_LATER
        except Exception:  # a report must not be lost to a bug of ours: the MTA will retry
            log.exception("bounces.failed")
            return TRY_LATER
        return ACCEPTED

    async def _receive(self, content: bytes, rcpt_tos: Sequence[str]) -> None:
        report = read_report(content)
        if not report.outcomes:
            log.info("bounces.unrecognised", report_message_id=report.message_id)
            return
        done: list[dict[str, Any]] = []  # logged once committed
        async with self._sessions() as session, session.begin():
            lookup = BounceRepository(session)
            for rcpt in rcpt_tos:
                delivery_id = self.delivery_of(rcpt)
                if delivery_id is None:  # refused at RCPT; never here
                    continue
                organization = await lookup.organization_of(delivery_id)
                public_id = to_public(IdKind.DELIVERY, delivery_id)
                if organization is None:
                    log.info("bounces.unmatched", delivery_id=public_id)
                    continue
                applied = await InboundService(
                    repo=InboundRepository(session, organization),
                    suppressions=SuppressionRepository(session, organization),
                ).apply(events_for(report, delivery_id=delivery_id, rcpt=rcpt))
                done.append(
                    {
                        "delivery_id": public_id,
                        "applied": applied.applied,
                        "duplicates": applied.duplicates,
                        "suppressed": applied.suppressed,
                    }
                )
        for entry in done:
            log.info(
                "bounces.received",
                types=[o.type.value for o in report.outcomes],
                codes=[o.status for o in report.outcomes if o.status],
                **entry,
            )


class _TrackedSMTP(SMTP):
    """aiosmtpd's protocol, remembering its open connections so stop() can close them."""

    def __init__(self, handler: BounceHandler, *, live: set[_TrackedSMTP], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._live = live
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Track a new connection (STARTTLS calls this again on the same one)."""
        is_new_connection = self.transport is None
        super().connection_made(transport)
        if is_new_connection:
            self.task = self._handler_coroutine  # the task serving this connection
            self._live.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        """Forget a closed connection."""
        super().connection_lost(error)
        self._live.discard(self)


class BounceListener:
    """The SMTP server of ``guestcomms bounces``, on the running event loop.

    ``port`` 0 picks a free port (read it back from :attr:`port` once started). Stopping
    closes open connections: a report whose transaction was not finished gets no 250, so its
    MTA sends it again.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sessions: async_sessionmaker[AsyncSession],
        bounce_domain: str,
        local_part: str = DEFAULT_LOCAL_PART,
        hostname: str | None = None,
        idle_timeout_seconds: float = IDLE_TIMEOUT_SECONDS,
    ) -> None:
        self.host = host
        self._port = port
        self.handler = BounceHandler(
            sessions=sessions, bounce_domain=bounce_domain, local_part=local_part
        )
        self._hostname = hostname or bounce_domain  # its MX points here
        self._idle_timeout_seconds = idle_timeout_seconds
        self._server: asyncio.Server | None = None
        self._live: set[_TrackedSMTP] = set()

    @property
    def port(self) -> int:
        """The port listened on: the one asked for, or the one picked for port 0."""
        if self._server is not None and self._server.sockets:
            port: int = self._server.sockets[0].getsockname()[1]
            return port
        return self._port

    async def start(self) -> None:
        """Listen; ``ConfigError`` (one line) when the address cannot be bound."""
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: self._protocol(loop), self.host, self._port
            )
        except OSError as e:
            raise ConfigError(f"cannot listen on {self.host}:{self._port}: {e}") from e
        log.info("bounces.listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        """Stop listening, close open connections and wait for their tasks to end."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        connections = list(self._live)
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()
        tasks = [c.task for c in connections if c.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def _protocol(self, loop: asyncio.AbstractEventLoop) -> _TrackedSMTP:
        return _TrackedSMTP(
            self.handler,
            live=self._live,
            hostname=self._hostname,
            ident="guestcomms bounces",
            data_size_limit=DATA_SIZE_LIMIT_BYTES,
            enable_SMTPUTF8=True,  # RFC 6533 reports of internationalised addresses
            timeout=self._idle_timeout_seconds,
            loop=loop,
        )
