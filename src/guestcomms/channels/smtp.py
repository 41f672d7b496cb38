"""The SMTP provider: sends each email through a small pool of reused aiosmtplib connections.

Opening an SMTP connection costs several round trips (greeting, EHLO, often STARTTLS and
AUTH), far more than sending one message, so connections are kept and reused: at most
``pool_size`` are open at once, the most recently used is taken first, and one that fails
is dropped and replaced on the next send. One message is one SMTP transaction with one
recipient.

Outcomes map onto the provider protocol of :mod:`guestcomms.channels.base`:

    4xx reply (incl. 421, 451, 454)             TransientProviderError(code="4xx")
    530/535 (credentials refused)               CredentialsError(code="535")
    other 5xx reply                             PermanentProviderError(code="5xx")
    refused connection, timeout, disconnect     TransientProviderError
    server lacks STARTTLS or AUTH we need       PermanentProviderError
    message that cannot be built or addressed   PermanentProviderError
    DKIM key file that cannot be read           TransientProviderError (fix it; retried)

With a :class:`~guestcomms.channels.dkim_signing.DkimSigner` (``GUESTCOMMS_DKIM_KEYS_DIR``),
each message whose From domain has a key is DKIM-signed before it is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from typing import Any, Self

import aiosmtplib

from guestcomms.channels.base import (
    CredentialsError,
    OutgoingEmail,
    PermanentProviderError,
    Provider,
    ProviderError,
    SendReceipt,
    TransientProviderError,
)
from guestcomms.channels.dkim_signing import DkimSigner
from guestcomms.channels.mime import address_domain, address_spec, build_email_bytes
from guestcomms.channels.verp import return_path
from guestcomms.config import Settings, SmtpSecurity
from guestcomms.errors import ConfigError

__all__ = ["SmtpProvider"]

# Replies after which the connection is still in a known state: aiosmtplib has already sent
# RSET to clear the envelope, so the connection can serve the next message.
_REPLY_ERRORS = (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused)
# 535 "authentication credentials invalid", 530 "authentication required"
_CREDENTIAL_CODES = frozenset({530, 535})
# Everything send() turns into a ProviderError; anything else is a bug and propagates.
_SEND_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError)


class SmtpProvider(Provider[OutgoingEmail]):
    """Send email through one SMTP relay, over up to ``pool_size`` reused connections."""

    name = "smtp"

    def __init__(
        self,
        *,
        host: str,
        port: int = 25,
        username: str | None = None,
        password: str | None = None,
        security: SmtpSecurity = SmtpSecurity.NONE,
        timeout_seconds: float = 30.0,
        pool_size: int = 8,
        validate_certs: bool = True,
        tls_context: ssl.SSLContext | None = None,
        bounce_domain: str | None = None,
        dkim: DkimSigner | None = None,
    ) -> None:
        """Configure the relay; no connection is opened until the first send.

        ``tls_context``, when given, is used as it is for TLS and STARTTLS (``validate_certs``
        is then ignored); tests pass one that trusts their own certificate. ``bounce_domain``,
        when given, makes each envelope sender the delivery's VERP address
        (:mod:`guestcomms.channels.verp`) instead of the From address. ``dkim``, when given,
        signs each message whose From domain has a key.
        """
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        super().__init__(max_concurrency=pool_size)
        self.host = host
        self.port = port
        self.security = security
        self._username = username
        self._password = password
        self._timeout_seconds = timeout_seconds
        self._validate_certs = validate_certs
        self._tls_context = tls_context
        self._bounce_domain = bounce_domain
        self._dkim = dkim
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: list[aiosmtplib.SMTP] = []  # a stack: the most recently used on top
        self._local_hostname: str | None = None  # learnt on the first connection
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpProvider:
        """Build the provider from ``smtp_*`` settings; ``ConfigError`` if no host is set."""
        if settings.smtp_host is None:
            raise ConfigError("smtp_host is not set (GUESTCOMMS_SMTP_HOST)")
        password = settings.smtp_password
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=password.get_secret_value() if password is not None else None,
            security=settings.smtp_security,
            timeout_seconds=settings.smtp_timeout_seconds,
            pool_size=settings.smtp_pool_size,
            validate_certs=settings.smtp_validate_certs,
            bounce_domain=settings.bounce_domain,
            dkim=(
                DkimSigner(settings.dkim_keys_dir, selector=settings.dkim_selector)
                if settings.dkim_keys_dir is not None
                else None
            ),
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, session: object = None) -> Self:
        """Build from an account's ``{"host", "port"?, "username"?, "password"?,
        "security"?, "timeout_seconds"?, "pool_size"?, "validate_certs"?, "bounce_domain"?}``;
        ``session`` is unused (SMTP). ``ConfigError`` names a missing or invalid setting."""
        host = config.get("host")
        if not host:
            raise ConfigError("smtp: missing setting 'host'")
        try:
            security = SmtpSecurity(config.get("security", SmtpSecurity.NONE))
            return cls(
                host=str(host),
                port=int(config.get("port", 25)),
                username=config.get("username") or None,
                password=config.get("password") or None,
                security=security,
                timeout_seconds=float(config.get("timeout_seconds", 30.0)),
                pool_size=int(config.get("pool_size", 8)),
                validate_certs=bool(config.get("validate_certs", True)),
                bounce_domain=config.get("bounce_domain") or None,
            )
        except (TypeError, ValueError) as e:
            raise ConfigError(f"smtp: invalid setting: {e}") from e

    async def send(self, item: OutgoingEmail) -> SendReceipt:
        """Send one email; return a receipt whose id is the item's Message-ID.

        Raises only :class:`ProviderError` subclasses, classified as the module docstring
        describes.
        """
        try:
            envelope_sender = (
                return_path(delivery_id=item.delivery_id, bounce_domain=self._bounce_domain)
                if self._bounce_domain
                else address_spec(item.sender)
            )
            data = build_email_bytes(item)
            if self._dkim is not None:
                data = self._dkim.sign(data, domain=address_domain(item.sender))
        except ValueError as e:
            raise PermanentProviderError(f"invalid message: {e}") from e
        except ConfigError as e:  # an unreadable key file: retried until someone fixes it
            raise TransientProviderError(str(e)) from e
        try:
            async with self._slots:
                await self._transaction(envelope_sender, item.recipient, data)
        except _SEND_ERRORS as e:
            raise _classify(e) from e
        return SendReceipt(provider_message_id=item.message_id)

    async def close(self) -> None:
        """QUIT every idle connection; connections still in use close when they finish."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(client) for client in idle))

    async def _transaction(self, sender: str, recipient: str, data: bytes) -> None:
        client, reused = await self._checkout()
        try:
            try:
                await client.sendmail(sender, [recipient], data)
            except aiosmtplib.SMTPServerDisconnected:
                if not reused:
                    raise
                # The server closed this pooled connection while it sat idle, and the loss
                # only showed when we wrote to it. One retry on a fresh connection adds no
                # risk of a duplicate that the worker's own retry would not also take.
                client.close()
                client = await self._connect()
                await client.sendmail(sender, [recipient], data)
        except _REPLY_ERRORS:
            self._checkin(client)
            raise
        except BaseException:
            client.close()
            raise
        self._checkin(client)

    async def _checkout(self) -> tuple[aiosmtplib.SMTP, bool]:
        """Return a connected client and whether it was reused from the pool."""
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client, True
            client.close()  # the server hung up while it was idle and we already noticed
        return await self._connect(), False

    def _checkin(self, client: aiosmtplib.SMTP) -> None:
        if client.is_connected and not self._closed:
            self._idle.append(client)
        else:
            client.close()

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self._username,
            password=self._password,
            # aiosmtplib would otherwise resolve our FQDN in a thread for every connection.
            local_hostname=self._local_hostname,
            timeout=self._timeout_seconds,
            use_tls=self.security is SmtpSecurity.TLS,
            # False rather than aiosmtplib's default "upgrade if offered": "none" means none.
            start_tls=self.security is SmtpSecurity.STARTTLS,
            validate_certs=self._validate_certs,
            tls_context=self._tls_context,
        )
        await client.connect()  # greeting, EHLO, STARTTLS and AUTH as configured
        self._local_hostname = client.local_hostname
        return client


async def _quit(client: aiosmtplib.SMTP) -> None:
    # The connection is going away either way; a server that does not answer QUIT
    # politely changes nothing.
    with contextlib.suppress(*_SEND_ERRORS):
        await client.quit()
    client.close()


def _classify(error: Exception) -> ProviderError:
    """Map an aiosmtplib, socket or address error onto the provider error tree."""
    reply: Exception = error
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused) and error.recipients:
        reply = error.recipients[0]  # one recipient per transaction
    if isinstance(reply, aiosmtplib.SMTPResponseException):
        detail = f"SMTP {reply.code}: {reply.message}"
        if reply.code in _CREDENTIAL_CODES or isinstance(error, aiosmtplib.SMTPAuthenticationError):
            return CredentialsError(detail, code=str(reply.code))
        if 500 <= reply.code < 600:
            return PermanentProviderError(detail, code=str(reply.code))
        return TransientProviderError(detail, code=str(reply.code))
    detail = f"{type(error).__name__}: {error}"
    if isinstance(error, OSError | TimeoutError):
        # SMTPServerDisconnected, SMTPConnectError and SMTPTimeoutError are among these.
        return TransientProviderError(detail)
    # SMTPNotSupported and kin (no STARTTLS or AUTH offered, so the configuration and the
    # server disagree), or an address aiosmtplib refuses to put on the wire.
    return PermanentProviderError(detail)
