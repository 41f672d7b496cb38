"""Inbound provider webhooks through the API: verified, applied once, forward only, and
suppressing hard bounces, complaints and opt-outs."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from guestcomms.channels.inbound import vonage
from guestcomms.compliance.models import Suppression
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.messages.models import Delivery, DeliveryEvent
from guestcomms.organizations.models import Organization
from guestcomms.providers.models import ProviderAccount
from tests.support import make_settings, running_app, seed_deliveries

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "provider-events"
BOUNCED_ID = "2706ee8a-737c-4285-b032-ccd317af53ed"  # postmark/bounce_hard.json, spam_complaint
TWILIO_SID = "SMe287d7109a5a925f182f0e07fe5b223b"
POSTMARK_SECRET = "hook:s3cret"


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on a fresh database."""
    engine = create_engine(database_url)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


async def _org_with_sent_delivery(
    sessions: async_sessionmaker[AsyncSession],
    *,
    name: str,
    kind: str,
    credentials: dict[str, str],
    provider_message_id: str,
    channel: str = "email",
) -> tuple[uuid.UUID, uuid.UUID]:
    [delivery_id] = await seed_deliveries(
        sessions, count=1, org_name=name, email_domain=f"{name.lower()}.example"
    )
    async with sessions() as session, session.begin():
        org = await session.scalar(select(Organization).where(Organization.name == name))
        assert org is not None
        await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(
                status="sent",
                provider=kind,
                provider_message_id=provider_message_id,
                channel=channel,
            )
        )
        session.add(
            ProviderAccount(
                organization_id=org.id,
                name=kind,
                kind=kind,
                channel=channel,
                credentials=credentials,
            )
        )
    return org.id, delivery_id


def _basic(secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()}


async def _post_postmark(
    client: httpx.AsyncClient, org: uuid.UUID, payload: dict[str, Any], secret: str
) -> httpx.Response:
    return await client.post(
        f"/v1/inbound/postmark/org_{org.hex}", json=payload, headers=_basic(secret)
    )


async def _history(sessions: async_sessionmaker[AsyncSession], delivery_id: uuid.UUID) -> list[str]:
    async with sessions() as session:
        return list(
            (
                await session.scalars(
                    select(DeliveryEvent.type)
                    .where(DeliveryEvent.delivery_id == delivery_id)
                    .order_by(DeliveryEvent.id)
                )
            ).all()
        )


async def _status(sessions: async_sessionmaker[AsyncSession], delivery_id: uuid.UUID) -> str:
    async with sessions() as session:
        status = await session.scalar(select(Delivery.status).where(Delivery.id == delivery_id))
    assert status is not None
    return status


def _fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


async def test_bounce_is_applied_once_and_suppresses(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A hard bounce moves the delivery to bounced and suppresses the address; the same
    payload again changes nothing; a late 'delivered' cannot move it back."""
    org, delivery = await _org_with_sent_delivery(
        sessions,
        name="Postal",
        kind="postmark",
        credentials={"server_token": "x", "webhook_secret": POSTMARK_SECRET},
        provider_message_id=BOUNCED_ID,
    )
    bounce = _fixture("postmark/bounce_hard.json")
    late_delivery = {**_fixture("postmark/delivery.json"), "MessageID": BOUNCED_ID}
    async with running_app(make_settings(database_url)) as api:
        first = await _post_postmark(api.client, org, bounce, POSTMARK_SECRET)
        again = await _post_postmark(api.client, org, bounce, POSTMARK_SECRET)
        late = await _post_postmark(api.client, org, late_delivery, POSTMARK_SECRET)
        complaint = await _post_postmark(
            api.client, org, _fixture("postmark/spam_complaint.json"), POSTMARK_SECRET
        )
    assert first.status_code == 200, first.text
    assert first.json() == {
        "received": 1,
        "applied": 1,
        "duplicates": 0,
        "unmatched": 0,
        "suppressed": 1,
        "resubscribed": 0,
    }
    assert again.json()["duplicates"] == 1
    assert again.json()["applied"] == 0
    assert late.json()["applied"] == 1
    assert complaint.json()["applied"] == 1
    assert await _status(sessions, delivery) == "complained"
    assert await _history(sessions, delivery) == ["bounced", "delivered", "complained"]
    async with sessions() as session:
        suppressions = (
            await session.execute(select(Suppression.address, Suppression.reason))
        ).all()
        late_event = await session.scalar(
            select(DeliveryEvent.detail).where(DeliveryEvent.type == "delivered")
        )
    assert sorted(tuple(r) for r in suppressions) == [
        ("bounce@example.com", "hard_bounce"),
        ("spam@example.com", "complaint"),
    ]
    assert late_event is not None
    assert late_event["status_changed"] is False


async def test_bad_credentials_are_refused_and_change_nothing(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Unsigned, wrongly signed, or another organization's credentials: 401, no change."""
    org_a, _ = await _org_with_sent_delivery(
        sessions,
        name="Alpha",
        kind="postmark",
        credentials={"server_token": "x", "webhook_secret": POSTMARK_SECRET},
        provider_message_id="alpha-id",
    )
    org_b, delivery_b = await _org_with_sent_delivery(
        sessions,
        name="Beta",
        kind="postmark",
        credentials={"server_token": "x", "webhook_secret": "beta:other"},
        provider_message_id=BOUNCED_ID,
    )
    bounce = _fixture("postmark/bounce_hard.json")
    async with running_app(make_settings(database_url)) as api:
        unsigned = await api.client.post(f"/v1/inbound/postmark/org_{org_b.hex}", json=bounce)
        wrong = await _post_postmark(api.client, org_b, bounce, "beta:wrong")
        others = await _post_postmark(api.client, org_b, bounce, POSTMARK_SECRET)
        unknown_org = await _post_postmark(api.client, uuid.uuid4(), bounce, POSTMARK_SECRET)
        unknown_provider = await api.client.post(f"/v1/inbound/pigeon/org_{org_a.hex}", json={})
    for response in (unsigned, wrong, others, unknown_org):
        assert response.status_code == 401, response.text
        assert response.json()["type"] == "/problems/bad-signature"
    assert unknown_provider.status_code == 404
    assert await _status(sessions, delivery_b) == "sent"
    assert await _history(sessions, delivery_b) == []
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Suppression)) == 0


async def test_twilio_opt_out_suppresses_the_number(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A Twilio status callback signed as RequestValidator signs it, with error 21610, fails
    the delivery and suppresses the number for SMS; a tampered copy is refused."""
    token = "twilio-auth-token"
    org, delivery = await _org_with_sent_delivery(
        sessions,
        name="Texts",
        kind="twilio_sms",
        credentials={"auth_token": token},
        provider_message_id=TWILIO_SID,
        channel="sms",
    )
    body = (FIXTURES / "twilio/status_failed_21610_unsubscribed.form").read_text().strip()
    params = dict(urllib.parse.parse_qsl(body))
    url = f"http://test/v1/inbound/twilio/org_{org.hex}"
    signature = RequestValidator(token).compute_signature(url, params)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with running_app(make_settings(database_url)) as api:
        tampered = await api.client.post(
            url,
            content=body.replace("failed", "delivered"),
            headers={**form, "X-Twilio-Signature": signature},
        )
        accepted = await api.client.post(
            url, content=body, headers={**form, "X-Twilio-Signature": signature}
        )
    assert tampered.status_code == 401
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["suppressed"] == 1
    assert await _status(sessions, delivery) == "failed"
    async with sessions() as session:
        row = (
            await session.execute(
                select(Suppression.channel, Suppression.address, Suppression.reason)
            )
        ).one()
    assert tuple(row) == ("sms", "+12028831111", "opt_out")


async def test_vonage_receipt_arrives_as_a_signed_get(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Vonage's default GET receipt, signed with the account's signature secret, is applied;
    the same receipt with a wrong signature is refused."""
    org, delivery = await _org_with_sent_delivery(
        sessions,
        name="Vonage",
        kind="vonage_sms",
        credentials={"api_key": "k", "api_secret": "s", "webhook_secret": "sig-secret"},
        provider_message_id="external1",
        channel="sms",
    )
    query = (FIXTURES / "vonage/dlr_delivered.query").read_text().strip()
    params = dict(urllib.parse.parse_qsl(query))
    params["timestamp"] = str(int(time.time()))
    params["sig"] = vonage.signature_for(params, secret="sig-secret", method="md5hash")
    url = f"/v1/inbound/vonage/org_{org.hex}"
    async with running_app(make_settings(database_url)) as api:
        forged = await api.client.get(url, params={**params, "sig": "0" * 32})
        signed = await api.client.get(url, params=params)
    assert forged.status_code == 401
    assert signed.status_code == 200, signed.text
    assert signed.json()["applied"] == 1
    assert await _status(sessions, delivery) == "delivered"
