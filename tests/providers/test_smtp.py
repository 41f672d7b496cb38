"""SmtpProvider and the MIME builder against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import socket
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest

from guestcomms.channels.base import (
    OutgoingEmail,
    PermanentProviderError,
    SendReceipt,
    TransientProviderError,
)
from guestcomms.channels.mime import address_domain, address_spec, build_email_bytes
from guestcomms.channels.smtp import SmtpProvider
from guestcomms.config import Settings, SmtpSecurity
from guestcomms.errors import ConfigError
from tests.smtp_server import (
    HOST,
    SmtpTestServer,
    client_tls_context,
    free_port,
    server_tls_context,
)

POLL_SECONDS = 0.01
MakeProvider = Callable[..., SmtpProvider]
StartServer = Callable[..., SmtpTestServer]


def make_item(**changes: object) -> OutgoingEmail:
    """An email with HTML, a reply-to and one extra header; ``changes`` override fields."""
    item = OutgoingEmail(
        delivery_id=uuid.uuid4(),
        organization_id=uuid.uuid4(),
        idempotency_key="idem-1",
        message_id=f"<{uuid.uuid4()}@mail.example.com>",
        sender="Ana & Ben <hello@example.com>",
        recipient="zoe@example.org",
        recipient_name="Zoe Smith",
        subject="Save the date: 12 June",
        text="Hello Zoe,\nwe are getting married!\n",
        html="<p>Hello Zoe,</p><p>we are getting married!</p>",
        reply_to="rsvp@example.com",
        headers={"List-Unsubscribe": "<https://example.com/u/abc>"},
    )
    return dataclasses.replace(item, **changes)  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    """Parse wire bytes the way a mail client would."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


async def wait_until(condition: Callable[[], bool], *, timeout_seconds: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail the test if it does not within the timeout."""
    # The state lives in the server's thread, so there is no event of ours to await.
    for _ in range(round(timeout_seconds / POLL_SECONDS)):
        if condition():
            return
        await asyncio.sleep(POLL_SECONDS)
    pytest.fail(f"still false after {timeout_seconds} s")


def content(part: object) -> str:
    """A text part's content with the wire's CRLF line endings turned back into LF."""
    assert isinstance(part, EmailMessage)
    text = part.get_content()
    assert isinstance(text, str)
    return text.replace("\r\n", "\n")


# --- the message on the wire -------------------------------------------------------------


async def test_sends_one_multipart_alternative_email_with_headers(
    smtp_server: SmtpTestServer, make_smtp_provider: MakeProvider
) -> None:
    """One send delivers one multipart/alternative email with both parts and every header."""
    item = make_item()

    receipt = await make_smtp_provider(smtp_server).send(item)

    assert receipt == SendReceipt(provider_message_id=item.message_id)
    [received] = smtp_server.messages
    assert received.mail_from == "hello@example.com"
    assert received.rcpt_tos == ["zoe@example.org"]
    message = parse(received.content)
    assert message.get_content_type() == "multipart/alternative"
    text_part, html_part = message.iter_parts()
    assert text_part.get_content_type() == "text/plain"
    assert content(text_part) == item.text
    assert html_part.get_content_type() == "text/html"
    assert content(html_part) == f"{item.html}\n"
    assert message["From"] == "Ana & Ben <hello@example.com>"
    assert message["To"] == "Zoe Smith <zoe@example.org>"
    assert message["Subject"] == item.subject
    assert message["Message-ID"] == item.message_id
    assert message["Reply-To"] == "rsvp@example.com"
    assert message["MIME-Version"] == "1.0"
    assert message["List-Unsubscribe"] == "<https://example.com/u/abc>"
    assert message["Date"].datetime.tzinfo is not None
    assert message.defects == []


async def test_text_only_email_is_a_single_text_part(
    smtp_server: SmtpTestServer, make_smtp_provider: MakeProvider
) -> None:
    """Without HTML the email is a single text/plain part and has no Reply-To when unset."""
    item = make_item(html=None, reply_to=None, headers={})

    await make_smtp_provider(smtp_server).send(item)

    message = parse(smtp_server.messages[0].content)
    assert message.get_content_type() == "text/plain"
    assert not message.is_multipart()
    assert content(message) == item.text
    assert "Reply-To" not in message
    assert message["MIME-Version"] == "1.0"


async def test_non_ascii_subject_name_and_body_roundtrip_over_7bit(
    smtp_server: SmtpTestServer, make_smtp_provider: MakeProvider
) -> None:
    """Non-ASCII subject, display name and body arrive intact in a 7-bit clean message."""
    item = make_item(
        recipient_name='Zoë Núñez, "la mejor"',
        subject="¡Guardad la fecha! Boda de Ana y Benoît 🎉",
        text="Hola Zoë,\n¡nos casamos!\n",
        html="<p>Hola Zoë, ¡nos casamos!</p>",
    )

    await make_smtp_provider(smtp_server).send(item)

    raw = smtp_server.messages[0].content
    assert raw.isascii()
    assert b"\nSubject: =?utf-8?" in raw
    message = parse(raw)
    assert message["Subject"] == item.subject
    [to] = message["To"].addresses
    assert to.display_name == item.recipient_name
    assert to.addr_spec == item.recipient
    text_part, html_part = message.iter_parts()
    assert content(text_part) == item.text
    assert content(html_part) == f"{item.html}\n"


@pytest.mark.parametrize(
    "changes",
    [
        {"subject": "Hello\r\nBcc: thief@evil.example"},
        {"subject": "Hello\nBcc: thief@evil.example"},
        {"subject": "Héllo\rBcc: thief@evil.example"},
        {"subject": "Hello\u2028Bcc: thief@evil.example"},
        {"recipient_name": "Zoe\r\nBcc: thief@evil.example"},
        {"recipient_name": "Zoë\nBcc: thief@evil.example"},
        {"sender": "Ana <hello@example.com>\r\nBcc: thief@evil.example"},
        {"reply_to": "rsvp@example.com\r\nBcc: thief@evil.example"},
        {"message_id": "<a@b>\r\nBcc: thief@evil.example"},
        {"headers": {"X-Tag": "wedding\r\nBcc: thief@evil.example"}},
    ],
    ids=lambda changes: next(iter(changes)),
)
async def test_line_breaks_in_header_values_cannot_add_a_header(
    changes: dict[str, object],
    smtp_server: SmtpTestServer,
    make_smtp_provider: MakeProvider,
) -> None:
    """CR/LF in any header value is refused before anything is sent, so no Bcc can appear."""
    item = make_item(**changes)

    with pytest.raises(ValueError, match="line breaks"):
        build_email_bytes(item)
    with pytest.raises(PermanentProviderError):
        await make_smtp_provider(smtp_server).send(item)
    assert smtp_server.messages == []
    assert smtp_server.connections_opened == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"Bcc": "thief@evil.example"},
        {"From": "Mallory <m@evil.example>"},
        {"content-type": "text/html"},
        {"Bad Name": "x"},
        {"X-Colon:": "x"},
    ],
    ids=lambda headers: next(iter(headers)),
)
def test_extra_headers_cannot_set_reserved_or_malformed_names(headers: dict[str, str]) -> None:
    """Extra headers may not override recipients, sender or MIME structure, nor be malformed."""
    with pytest.raises(ValueError, match="header"):
        build_email_bytes(make_item(headers=headers))


def test_address_helpers_take_a_header_value_or_a_bare_address() -> None:
    """address_spec and address_domain read "Name <addr>" and bare addresses alike."""
    assert address_spec("Ana & Ben <hello@Example.COM>") == "hello@Example.COM"
    assert address_domain("Ana & Ben <hello@Example.COM>") == "example.com"
    assert address_domain("noreply@guestcomms.localhost") == "guestcomms.localhost"
    bad_values = [
        "not an address",
        "a@",
        "@b.com",
        "a@b.com, c@d.com",
        "",
        "a@b.com\r\nX: y",
        "Zoë <zoe@bücher.de>",
    ]
    for bad in bad_values:
        with pytest.raises(ValueError):  # noqa: PT011 - each helper documents ValueError only
            address_domain(bad)


@pytest.mark.parametrize("recipient", ["not an address", "zoë@example.org", "zoe@bücher.de"])
async def test_unusable_recipient_is_permanent_and_never_connects(
    recipient: str, smtp_server: SmtpTestServer, make_smtp_provider: MakeProvider
) -> None:
    """A recipient that is not an ASCII address fails permanently before any connection."""
    with pytest.raises(PermanentProviderError):
        await make_smtp_provider(smtp_server).send(make_item(recipient=recipient))
    assert smtp_server.connections_opened == 0


# --- the connection pool -----------------------------------------------------------------


async def test_sequential_sends_reuse_one_connection(
    smtp_server: SmtpTestServer, make_smtp_provider: MakeProvider
) -> None:
    """Twenty messages sent one after another all travel over a single connection."""
    provider = make_smtp_provider(smtp_server, pool_size=4)

    for _ in range(20):
        await provider.send(make_item())

    assert len(smtp_server.messages) == 20
    assert smtp_server.connections_opened == 1


async def test_concurrent_sends_open_at_most_pool_size_connections(
    smtp_server: SmtpTestServer, make_smtp_provider: MakeProvider
) -> None:
    """Twenty concurrent messages open no more than pool_size connections."""
    provider = make_smtp_provider(smtp_server, pool_size=3)
    items = [make_item() for _ in range(20)]

    results = await provider.send_batch(items)

    assert results == [SendReceipt(provider_message_id=item.message_id) for item in items]
    assert len(smtp_server.messages) == 20
    assert 1 <= smtp_server.connections_opened <= 3


async def test_connection_closed_by_server_idle_timeout_is_replaced(
    start_smtp_server: StartServer, make_smtp_provider: MakeProvider
) -> None:
    """A pooled connection the server timed out is replaced transparently on the next send."""
    server = start_smtp_server(idle_timeout_seconds=0.2)
    provider = make_smtp_provider(server)
    await provider.send(make_item())

    await wait_until(lambda: server.open_connections == 0)
    await provider.send(make_item())

    assert len(server.messages) == 2
    assert server.connections_opened == 2


async def test_connection_dropped_before_the_client_noticed_is_retried(
    smtp_server: SmtpTestServer, make_smtp_provider: MakeProvider
) -> None:
    """A send that hits a connection the server already closed retries once on a fresh one."""
    provider = make_smtp_provider(smtp_server)
    await provider.send(make_item())

    # Blocks this thread, so the client's loop learns of the close only when it writes.
    smtp_server.drop_connections()
    await provider.send(make_item())

    assert len(smtp_server.messages) == 2
    assert smtp_server.messages[0].peer != smtp_server.messages[1].peer
    assert smtp_server.connections_opened == 2


async def test_close_quits_every_pooled_connection(
    smtp_server: SmtpTestServer, make_smtp_provider: MakeProvider
) -> None:
    """close() ends every idle connection with the server."""
    provider = make_smtp_provider(smtp_server, pool_size=3)
    await provider.send_batch([make_item() for _ in range(6)])
    assert smtp_server.open_connections >= 1

    await provider.close()

    await wait_until(lambda: smtp_server.open_connections == 0)


# --- classifying failures ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "code", "error"),
    [
        ("MAIL", 451, TransientProviderError),
        ("RCPT", 450, TransientProviderError),
        ("DATA", 452, TransientProviderError),
        ("MAIL", 553, PermanentProviderError),
        ("RCPT", 550, PermanentProviderError),
        ("DATA", 554, PermanentProviderError),
    ],
)
async def test_reply_codes_are_classified_and_the_connection_kept(
    stage: str,
    code: int,
    error: type[Exception],
    smtp_server: SmtpTestServer,
    make_smtp_provider: MakeProvider,
) -> None:
    """A 4xx reply is transient, a 5xx permanent; the next message reuses the connection."""
    provider = make_smtp_provider(smtp_server)
    smtp_server.fail_next(code, stage=stage)  # type: ignore[arg-type]

    with pytest.raises(error) as raised:
        await provider.send(make_item())
    await provider.send(make_item())

    assert type(raised.value) is error
    assert raised.value.code == str(code)  # type: ignore[attr-defined]
    assert len(smtp_server.messages) == 1
    assert smtp_server.connections_opened == 1


async def test_421_is_transient_and_the_next_send_reconnects(
    smtp_server: SmtpTestServer, make_smtp_provider: MakeProvider
) -> None:
    """A 421 (service closing) is transient and the next send opens a fresh connection."""
    provider = make_smtp_provider(smtp_server)
    await provider.send(make_item())
    smtp_server.fail_next(421, stage="MAIL", text="closing, try later")

    with pytest.raises(TransientProviderError) as raised:
        await provider.send(make_item())
    await provider.send(make_item())

    assert raised.value.code == "421"
    assert len(smtp_server.messages) == 2
    assert smtp_server.connections_opened == 2


async def test_refused_connection_is_transient(make_smtp_provider: MakeProvider) -> None:
    """Nothing listening on the port gives a TransientProviderError."""
    provider = SmtpProvider(host=HOST, port=free_port(), timeout_seconds=5.0)

    with pytest.raises(TransientProviderError):
        await provider.send(make_item())
    await provider.close()


async def test_server_that_never_greets_times_out_as_transient() -> None:
    """A server that accepts but never answers gives a TransientProviderError after the timeout."""
    with socket.create_server((HOST, 0)) as silent:
        provider = SmtpProvider(host=HOST, port=silent.getsockname()[1], timeout_seconds=0.2)

        with pytest.raises(TransientProviderError, match="Timeout"):
            await provider.send(make_item())
        await provider.close()


# --- TLS and authentication --------------------------------------------------------------


async def test_starttls_encrypts_the_session(
    tls_files: tuple[Path, Path], start_smtp_server: StartServer, make_smtp_provider: MakeProvider
) -> None:
    """security=starttls upgrades the connection before the message is sent."""
    cert, key = tls_files
    server = start_smtp_server(
        starttls_context=server_tls_context(cert, key), require_starttls=True
    )
    provider = make_smtp_provider(
        server, security=SmtpSecurity.STARTTLS, tls_context=client_tls_context(cert)
    )

    await provider.send(make_item())
    await provider.send(make_item())

    assert [message.tls for message in server.messages] == [True, True]
    assert server.connections_opened == 1


async def test_implicit_tls_encrypts_the_session(
    tls_files: tuple[Path, Path], start_smtp_server: StartServer, make_smtp_provider: MakeProvider
) -> None:
    """security=tls speaks TLS from the first byte."""
    cert, key = tls_files
    server = start_smtp_server(ssl_context=server_tls_context(cert, key))
    provider = make_smtp_provider(
        server, security=SmtpSecurity.TLS, tls_context=client_tls_context(cert)
    )

    await provider.send(make_item())

    assert server.messages[0].tls


async def test_validate_certs_false_accepts_a_self_signed_certificate(
    tls_files: tuple[Path, Path], start_smtp_server: StartServer, make_smtp_provider: MakeProvider
) -> None:
    """With validate_certs=False an untrusted certificate is accepted; with True it is not."""
    cert, key = tls_files
    server = start_smtp_server(ssl_context=server_tls_context(cert, key))
    trusting = make_smtp_provider(server, security=SmtpSecurity.TLS, validate_certs=False)
    checking = make_smtp_provider(server, security=SmtpSecurity.TLS, validate_certs=True)

    await trusting.send(make_item())
    with pytest.raises(TransientProviderError):
        await checking.send(make_item())

    assert len(server.messages) == 1


async def test_auth_with_username_and_password(
    start_smtp_server: StartServer, make_smtp_provider: MakeProvider
) -> None:
    """A username and password log in before sending."""
    server = start_smtp_server(users={"planner": "s3cret"}, auth_required=False)
    provider = make_smtp_provider(server, username="planner", password="s3cret")

    await provider.send(make_item())

    assert server.messages[0].login == "planner"


async def test_wrong_password_is_permanent(
    start_smtp_server: StartServer, make_smtp_provider: MakeProvider
) -> None:
    """A rejected login (535) is a PermanentProviderError."""
    server = start_smtp_server(users={"planner": "s3cret"})
    provider = make_smtp_provider(server, username="planner", password="wrong")

    with pytest.raises(PermanentProviderError) as raised:
        await provider.send(make_item())

    assert raised.value.code == "535"
    assert server.messages == []


async def test_auth_over_starttls_when_the_server_requires_tls_for_auth(
    tls_files: tuple[Path, Path], start_smtp_server: StartServer, make_smtp_provider: MakeProvider
) -> None:
    """AUTH works after STARTTLS on a server that offers AUTH only over TLS."""
    cert, key = tls_files
    server = start_smtp_server(
        starttls_context=server_tls_context(cert, key),
        users={"planner": "s3cret"},
        auth_require_tls=True,
    )
    provider = make_smtp_provider(
        server,
        security=SmtpSecurity.STARTTLS,
        tls_context=client_tls_context(cert),
        username="planner",
        password="s3cret",
    )

    await provider.send(make_item())

    assert server.messages[0].login == "planner"
    assert server.messages[0].tls


# --- configuration -----------------------------------------------------------------------


async def test_from_settings_uses_the_smtp_settings(
    start_smtp_server: StartServer,
) -> None:
    """from_settings builds a provider from smtp_* settings that sends and authenticates."""
    server = start_smtp_server(users={"planner": "s3cret"})
    settings = Settings(
        smtp_host=server.host,
        smtp_port=server.port,
        smtp_username="planner",
        smtp_password="s3cret",
        smtp_pool_size=2,
    )
    provider = SmtpProvider.from_settings(settings)

    await provider.send(make_item())
    await provider.close()

    assert provider.name == "smtp"
    assert server.messages[0].login == "planner"


def test_from_settings_without_a_host_is_a_config_error() -> None:
    """from_settings refuses settings that name no SMTP host."""
    with pytest.raises(ConfigError, match="smtp_host"):
        SmtpProvider.from_settings(Settings(smtp_host=None))
