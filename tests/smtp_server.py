"""A real SMTP server for tests: aiosmtpd on 127.0.0.1 and a free port, in its own thread.

It records every accepted message with the connection it came on, counts connections, can be
told to answer a given reply code for the next N transactions, can drop every open connection
(as a server closing idle clients does), and speaks implicit TLS, STARTTLS and AUTH when
asked. Import it from any test::

    from tests.smtp_server import SmtpTestServer

    with SmtpTestServer() as server:
        ...  # send to server.host, server.port
        assert server.messages[0].rcpt_tos == ["zoe@example.org"]

:func:`make_self_signed_cert` writes a certificate for 127.0.0.1 and localhost with the
``openssl`` command line tool.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"
Stage = Literal["MAIL", "RCPT", "DATA"]
STOP_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class ReceivedMessage:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    peer: object  # the client's (host, port): one per connection
    tls: bool
    login: str | None  # the AUTH user name, if the client authenticated


@dataclass
class _Failure:
    stage: Stage
    reply: str
    remaining: int


class RecordingHandler:
    """aiosmtpd handler: records messages and answers the failures it was told to."""

    def __init__(self) -> None:
        self.messages: list[ReceivedMessage] = []
        self.connections_opened = 0
        self._lock = threading.Lock()
        self._failures: list[_Failure] = []
        self._live: set[SMTP] = set()
        self._all_closed: asyncio.Event | None = None

    def fail_next(
        self, code: int, *, count: int = 1, stage: Stage = "DATA", text: str = "refused"
    ) -> None:
        """Answer ``code`` at ``stage`` for the next ``count`` transactions."""
        with self._lock:
            self._failures.append(_Failure(stage, f"{code} {text}", count))

    def _take_failure(self, stage: Stage) -> str | None:
        with self._lock:
            for failure in self._failures:
                if failure.stage == stage:
                    failure.remaining -= 1
                    if failure.remaining == 0:
                        self._failures.remove(failure)
                    return failure.reply
        return None

    async def handle_MAIL(  # noqa: N802 - aiosmtpd hook names
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        """Accept the sender unless a failure is pending for MAIL."""
        if (reply := self._take_failure("MAIL")) is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802 - aiosmtpd hook names
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Accept the recipient unless a failure is pending for RCPT."""
        if (reply := self._take_failure("RCPT")) is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd hook names
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        """Record the message unless a failure is pending for DATA."""
        if (reply := self._take_failure("DATA")) is not None:
            return reply
        assert isinstance(envelope.content, bytes)
        assert envelope.mail_from is not None
        assert server.transport is not None
        auth = session.auth_data
        self.messages.append(
            ReceivedMessage(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                content=envelope.content,
                peer=session.peer,
                tls=server.transport.get_extra_info("ssl_object") is not None,
                login=auth.login.decode() if isinstance(auth, LoginPassword) else None,
            )
        )
        return "250 Message accepted"

    def _opened(self, server: SMTP) -> None:
        with self._lock:
            self.connections_opened += 1
            self._live.add(server)

    def _lost(self, server: SMTP) -> None:
        with self._lock:
            self._live.discard(server)
            if not self._live and self._all_closed is not None:
                self._all_closed.set()

    async def _drop_all(self) -> None:
        # Runs on the server's loop, like _opened and _lost, so the event is safe to share.
        with self._lock:
            live = list(self._live)
            self._all_closed = asyncio.Event()
            if not live:
                self._all_closed.set()
        for server in live:
            if server.transport is not None:
                server.transport.close()
        await self._all_closed.wait()  # connection_lost runs on a later turn of the loop
        self._all_closed = None


class _TrackedSMTP(SMTP):
    """aiosmtpd's SMTP protocol, telling the handler when a connection opens and closes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        is_new_connection = self.transport is None  # STARTTLS calls this again
        super().connection_made(transport)
        if is_new_connection:
            self.event_handler._opened(self)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        self.event_handler._lost(self)


class _TrackedController(Controller):
    def factory(self) -> SMTP:
        return _TrackedSMTP(self.handler, **self.SMTP_kwargs)


class SmtpTestServer:
    """A started-on-enter aiosmtpd server recording what it receives.

    ``ssl_context`` makes it speak implicit TLS; ``starttls_context`` offers STARTTLS;
    ``users`` (name -> password) offers AUTH PLAIN/LOGIN, also over plain text;
    ``idle_timeout_seconds`` closes connections idle that long. Other keyword arguments go
    to :class:`aiosmtpd.smtp.SMTP`.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        starttls_context: ssl.SSLContext | None = None,
        users: dict[str, str] | None = None,
        idle_timeout_seconds: float = 300,
        **smtp_kwargs: Any,
    ) -> None:
        self.handler = RecordingHandler()
        self.host = HOST
        self.port = free_port()
        self._users = users
        if starttls_context is not None:
            smtp_kwargs["tls_context"] = starttls_context
        if users is not None:
            smtp_kwargs.setdefault("authenticator", self._authenticate)
            smtp_kwargs.setdefault("auth_require_tls", False)
        self._controller = _TrackedController(
            self.handler,
            hostname=HOST,
            port=self.port,
            ssl_context=ssl_context,
            timeout=idle_timeout_seconds,
            **smtp_kwargs,
        )

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Every accepted message, in order of arrival."""
        return self.handler.messages

    @property
    def connections_opened(self) -> int:
        """How many client connections were opened since the server started."""
        return self.handler.connections_opened

    @property
    def open_connections(self) -> int:
        """How many client connections are open right now."""
        return len(self.handler._live)

    def fail_next(
        self, code: int, *, count: int = 1, stage: Stage = "DATA", text: str = "refused"
    ) -> None:
        """Answer ``code`` at ``stage`` (MAIL, RCPT or DATA) for the next ``count`` times."""
        self.handler.fail_next(code, count=count, stage=stage, text=text)

    def drop_connections(self) -> None:
        """Close every open connection from the server side and wait until they are closed.

        This blocks the caller's thread, so a client event loop running in it cannot see
        the connections go until its next turn.
        """
        future = asyncio.run_coroutine_threadsafe(self.handler._drop_all(), self._controller.loop)
        future.result(timeout=STOP_TIMEOUT_SECONDS)

    def start(self) -> None:
        """Start serving; return once the server answers."""
        self._controller.start()
        # The controller's own start-up probe connected once; it is not a client.
        self.handler.connections_opened = 0

    def stop(self) -> None:
        """Stop serving and join the server thread."""
        self._controller.stop()

    def __enter__(self) -> SmtpTestServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: object,
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self._users is None:
            return AuthResult(success=False, handled=False)
        expected = self._users.get(auth_data.login.decode())
        return AuthResult(
            success=expected is not None and expected == auth_data.password.decode(),
            handled=False,
            auth_data=auth_data,
        )


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on, reserved for the caller.

    The port comes from the OS (bind to port 0) and is left in TIME_WAIT: for about a minute
    the kernel hands it to no other ``bind(0)`` or outgoing connection (in this process, in
    another pytest-xdist worker or anywhere else), while a server that binds it with
    SO_REUSEADDR, as asyncio, uvicorn, aiosmtpd and ``http.server`` do, can still take it.
    Without this, the port could be given away between this call and the server's bind.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        listener.listen(1)
        port: int = listener.getsockname()[1]
        with socket.create_connection((HOST, port)):
            accepted, _ = listener.accept()
            # the side that closes first keeps the connection in TIME_WAIT: the server side,
            # whose local address is (HOST, port)
            accepted.close()
    return port


def make_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """Write a self-signed certificate and key for 127.0.0.1 and localhost; return their paths."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side context presenting ``cert``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def client_tls_context(cert: Path) -> ssl.SSLContext:
    """A client-side context that trusts only ``cert``, with hostname checking on."""
    return ssl.create_default_context(cafile=str(cert))
