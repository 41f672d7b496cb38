"""SMS keywords texted to an organization's Twilio number (the real inbound-message payload,
signed as Twilio signs it): STOP suppresses the number so later SMS are blocked, START lifts
it, HELP is answered with the organization's help text as TwiML."""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from guestcomms.app import create_worker
from guestcomms.channels.simulator import ProviderSimulator, SimulatorCredentials
from guestcomms.compliance.models import Suppression
from guestcomms.config import Settings
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.organizations.models import Organization
from tests.support import create_contact, create_key, make_settings, running_app

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "provider-events"
GUEST = "+14133881111"  # the From of twilio/inbound_sms.form
TEMPLATE = {
    "name": "news",
    "subject": "News",
    "text": "News",
    "channel_content": {"sms": {"body": "{{ first_name }}: the shuttle leaves at 17:00."}},
}


class Org:
    """A running app, an organization with a Twilio account on the simulator, and a guest."""

    def __init__(
        self, settings: Settings, client: httpx.AsyncClient, simulator: Any, token: str
    ) -> None:
        self.settings = settings
        self.client = client
        self.simulator = simulator
        self.token = token
        self.id = uuid.UUID(int=0)
        self.guest = ""

    async def text(self, body: str | None = None, **extra: str) -> httpx.Response:
        """POST Twilio's inbound message (the fixture, with ``body`` and ``extra`` fields),
        signed with the account's auth token."""
        raw = (FIXTURES / "twilio/inbound_sms.form").read_text().strip()
        params = dict(urllib.parse.parse_qsl(raw))
        if body is not None:
            params["Body"] = body
        params.update(extra)
        url = f"http://test/v1/inbound/twilio/org_{self.id.hex}"
        signature = RequestValidator(self.token).compute_signature(url, params)
        return await self.client.post(
            url,
            content=urllib.parse.urlencode(params),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            },
        )

    async def send_sms(self) -> dict[str, Any]:
        """Send the guest an SMS, run the worker, and return the delivery."""
        template = await self.client.post(
            "/v1/templates", json={**TEMPLATE, "name": uuid.uuid4().hex}
        )
        sent = await self.client.post(
            "/v1/messages",
            json={
                "template_id": template.json()["id"],
                "contact_ids": [self.guest],
                "channels": ["sms"],
            },
        )
        assert sent.status_code == 202, sent.text
        async with create_worker(self.settings) as worker:
            await worker.run_until_idle()
        view = (await self.client.get(f"/v1/messages/{sent.json()['id']}")).json()
        [delivery] = view["deliveries"]
        return dict(delivery)

    async def suppressions(self) -> list[tuple[str, str, str, str | None]]:
        engine = create_engine(self.settings.database_url)
        try:
            async with create_session_factory(engine)() as session:
                rows = await session.execute(
                    select(
                        Suppression.channel,
                        Suppression.address,
                        Suppression.reason,
                        Suppression.source,
                    )
                )
                return [tuple(r) for r in rows]  # type: ignore[misc]
        finally:
            await engine.dispose()

    async def set_settings(self, settings: dict[str, Any]) -> None:
        engine = create_engine(self.settings.database_url)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                await session.execute(
                    update(Organization).where(Organization.id == self.id).values(settings=settings)
                )
        finally:
            await engine.dispose()


@pytest.fixture
async def org(database_url: str) -> AsyncIterator[Org]:
    """The organization ``Texts``, its Twilio account and the guest who texts it."""
    settings = make_settings(database_url)
    key = await create_key(database_url, "Texts")
    creds = SimulatorCredentials()
    async with (
        ProviderSimulator() as simulator,
        running_app(settings) as api,
        api.as_key(key) as client,
    ):
        added = await client.post(
            "/v1/providers",
            json={
                "name": "twilio",
                "kind": "twilio_sms",
                "settings": {"base_url": simulator.base_url, "sender": "+12028831111"},
                "credentials": {
                    "account_sid": creds.twilio_account_sid,
                    "auth_token": creds.twilio_auth_token,
                },
            },
        )
        assert added.status_code == 201, added.text
        state = Org(settings, client, simulator, creds.twilio_auth_token)
        engine = create_engine(database_url)
        try:
            async with create_session_factory(engine)() as session:
                found = await session.scalar(
                    select(Organization.id).where(Organization.name == "Texts")
                )
        finally:
            await engine.dispose()
        assert found is not None
        state.id = found
        state.guest = await create_contact(client, phone=GUEST, first_name="Guest")
        yield state


async def test_stop_blocks_later_sms_and_start_lifts_it(org: Org) -> None:
    """'STOP' suppresses the sender's number (sms, stop, inbound-keyword); the next SMS to
    them is blocked with that reason and never reaches Twilio; the same webhook again changes
    nothing; 'Start' lifts the suppression and the next SMS is sent."""
    stopped = await org.text("STOP")
    assert stopped.status_code == 200, stopped.text
    assert (stopped.json()["applied"], stopped.json()["suppressed"]) == (1, 1)
    assert await org.suppressions() == [("sms", GUEST, "stop", "inbound-keyword")]
    replayed = await org.text("STOP")
    assert replayed.json()["duplicates"] == 1

    blocked = await org.send_sms()
    assert blocked["status"] == "blocked"
    assert "stop" in blocked["last_error"]
    assert org.simulator.requests_for("twilio") == []

    started = await org.text(" Start ")
    assert started.status_code == 200, started.text
    assert started.json()["resubscribed"] == 1
    assert await org.suppressions() == []
    assert (await org.send_sms())["status"] == "sent"
    assert len(org.simulator.requests_for("twilio")) == 1


@pytest.mark.parametrize("word", ["stopall", "Unsubscribe", "CANCEL", "end.", " Quit! "])
async def test_every_stop_word_opts_out(org: Org, word: str) -> None:
    """The other STOP words, in any case, trimmed and without punctuation, count too."""
    assert (await org.text(word)).json()["suppressed"] == 1


async def test_a_sentence_that_starts_with_a_stop_word_is_an_ordinary_reply(org: Org) -> None:
    """Guests answer in sentences: "Cancel my plus-one" must not opt them out."""
    assert (await org.text("Cancel my plus-one, sorry")).json()["suppressed"] == 0
    assert await org.suppressions() == []


async def test_an_ordinary_text_changes_nothing(org: Org) -> None:
    """The fixture's own text ('Msg') is no keyword: recorded, unmatched, nothing suppressed."""
    answer = await org.text()
    assert answer.json() == {
        "received": 1,
        "applied": 0,
        "duplicates": 0,
        "unmatched": 1,
        "suppressed": 0,
        "resubscribed": 0,
    }
    assert await org.suppressions() == []


async def test_twilio_opt_out_type_wins_over_the_text(org: Org) -> None:
    """Twilio Advanced Opt-Out classified the text (OptOutType=STOP): it is an opt-out even
    though the words are not ours; OptOutType=START lifts it."""
    assert (await org.text("arrêt svp", OptOutType="STOP")).json()["suppressed"] == 1
    assert await org.suppressions() == [("sms", GUEST, "stop", "inbound-keyword")]
    assert (await org.text("oui", OptOutType="START")).json()["resubscribed"] == 1


async def test_help_is_answered_with_the_help_text_as_twiml(org: Org) -> None:
    """HELP gets the organization's sms_help_text back as TwiML (escaped); without one, a
    default naming the organization."""
    default = await org.text("help")
    assert default.status_code == 200
    assert default.headers["content-type"].startswith("text/xml")
    assert "<Message>Texts: reply STOP to unsubscribe" in default.text
    await org.set_settings({"sms_help_text": "Ana & Ben's wedding: call +1 202 555 0100"})
    answer = await org.text("INFO")
    assert answer.text == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Message>'
        "Ana &amp; Ben's wedding: call +1 202 555 0100</Message></Response>"
    )
    assert await org.suppressions() == []
