"""DKIM end to end: `guestcomms dkim keygen` prints a record, the SMTP provider signs with the
key it wrote, and dkimpy verifies what the SMTP server received against that record."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import dkim
import pytest
from typer.testing import CliRunner, Result

from guestcomms.channels.base import OutgoingEmail
from guestcomms.channels.smtp import SmtpProvider
from guestcomms.cli import app as cli_app
from guestcomms.config import Settings
from tests.smtp_server import SmtpTestServer

DOMAIN = "anaben.example"
SELECTOR = "wed2026"


def _keygen(monkeypatch: pytest.MonkeyPatch, keys_dir: Path, *args: str) -> Result:
    for name in [n for n in os.environ if n.startswith("GUESTCOMMS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GUESTCOMMS_DKIM_KEYS_DIR", str(keys_dir))
    # in-process, the command's logging set-up would bind loggers to the runner's stderr,
    # which is closed afterwards: later tests would log to a closed file
    monkeypatch.setattr("guestcomms.commands.support.configure_logging", lambda **_: None)
    return CliRunner().invoke(cli_app, ["dkim", "keygen", *args])


def _printed_record(output: str) -> tuple[str, str]:
    """The record name and TXT value keygen printed, the value read from the zone line's
    strings (joined as a resolver does) and checked against the one-line value."""
    lines = dict(line.split(":", 1) for line in output.splitlines() if line)
    name = lines["name"].strip()
    zone = lines["zone"].strip()
    assert zone.startswith(f"{name}. IN TXT ( ")
    assert zone.endswith(" )")
    strings = re.findall(r'"([^"]*)"', zone)
    assert len(strings) == 2  # a 2048-bit key's record is over 255 characters
    assert all(len(s) <= 255 for s in strings)
    value = "".join(strings)
    assert value == lines["value"].strip()
    return name, value


def _email(sender: str) -> OutgoingEmail:
    return OutgoingEmail(
        delivery_id=uuid.uuid4(),
        organization_id=uuid.uuid4(),
        idempotency_key="idem-dkim",
        message_id=f"<{uuid.uuid4()}@{DOMAIN}>",
        sender=sender,
        recipient="zoe@example.org",
        recipient_name="Zoë Martin",
        subject="Save the date, Zoë: a long subject that the message builder has to fold",
        text="Hello Zoë,\nsee you at Villa Balbiano.\n",
        html="<p>Hello Zoë,</p><p>see you at Villa Balbiano.</p>",
        headers={
            "List-Unsubscribe": f"<https://{DOMAIN}/u/abc>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )


async def test_smtp_message_verifies_against_the_printed_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message sent through SMTP verifies against the record `dkim keygen` printed, and
    fails to verify once its Subject is altered."""
    keys_dir = tmp_path / "dkim"
    result = _keygen(monkeypatch, keys_dir, DOMAIN, "--selector", SELECTOR)
    assert result.exit_code == 0, result.output
    name, value = _printed_record(result.stdout)
    assert name == f"{SELECTOR}._domainkey.{DOMAIN}"
    assert "Publish the TXT record" in result.stderr
    assert "PRIVATE" not in result.output

    looked_up: list[bytes] = []

    def dns(qname: bytes, timeout: float = 5) -> bytes | None:
        looked_up.append(qname)
        return value.encode() if qname == f"{name}.".encode() else None

    settings = Settings(dkim_keys_dir=keys_dir, dkim_selector=SELECTOR, smtp_host="127.0.0.1")
    with SmtpTestServer() as server:
        provider = SmtpProvider.from_settings(
            settings.model_copy(update={"smtp_port": server.port, "smtp_timeout_seconds": 5.0})
        )
        try:
            await provider.send(_email(f"Ana & Ben <hello@{DOMAIN}>"))
            await provider.send(_email("Elsewhere <hello@other.example>"))
        finally:
            await provider.close()
        signed, unsigned = (m.content for m in server.messages)

    assert signed.startswith(b"DKIM-Signature: ")
    assert dkim.verify(signed, dnsfunc=dns)
    assert looked_up == [f"{name}.".encode()]
    subject = next(line for line in signed.split(b"\r\n") if line.startswith(b"Subject: "))
    altered = signed.replace(subject, b"Subject: =?utf-8?q?Pay_this_invoice?=", 1)
    assert altered != signed
    assert not dkim.verify(altered, dnsfunc=dns)
    assert b"DKIM-Signature" not in unsigned  # other.example has no key


def test_keygen_refuses_to_overwrite_without_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second keygen for the same domain and selector exits 1 with one line; --force
    replaces the key."""
    assert _keygen(monkeypatch, tmp_path, DOMAIN, "--bits", "1024").exit_code == 0
    again = _keygen(monkeypatch, tmp_path, DOMAIN, "--bits", "1024")
    assert again.exit_code == 1
    assert again.stderr.strip() == (
        f"error: dkim: {tmp_path / f'{DOMAIN}.gc1.pem'} exists (--force replaces it)"
    )
    assert _keygen(monkeypatch, tmp_path, DOMAIN, "--bits", "1024", "--force").exit_code == 0


def test_keygen_needs_a_keys_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without GUESTCOMMS_DKIM_KEYS_DIR, keygen exits 1 naming the setting."""
    monkeypatch.setattr("guestcomms.commands.support.configure_logging", lambda **_: None)
    monkeypatch.delenv("GUESTCOMMS_DKIM_KEYS_DIR", raising=False)
    result = CliRunner().invoke(cli_app, ["dkim", "keygen", DOMAIN])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: dkim_keys_dir is not set (GUESTCOMMS_DKIM_KEYS_DIR)"
