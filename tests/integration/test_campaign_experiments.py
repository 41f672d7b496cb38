"""Campaign experiments and send-time optimisation, on SQLite and PostgreSQL: each guest's
arm is the hash's (and stays so), results count unique human opens only and the sequential
test names the winner, a test fraction rolls the winner out to the others, and send-time
optimisation sends each guest at their own best hour, spread under the cap."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guestcomms.campaigns.fanout import FanoutRunner
from guestcomms.campaigns.models import Campaign
from guestcomms.domain.experiments import assign_arm, in_test_fraction
from guestcomms.domain.ids import IdKind, from_public
from guestcomms.messages.models import Delivery
from guestcomms.templates.models import Template, TemplateVersion
from guestcomms.tracking.models import TrackingEvent
from tests.integration.test_campaigns import (
    Setup,
    _contacts,
    _create,
    _deliveries,
    _get,
    _start,
    setup,
)
from tests.support import create_contact, create_template

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15"


def experiment(template_b: str, **more: Any) -> dict[str, Any]:
    """Two arms: the campaign's template, and template B."""
    return {
        "variants": [{"name": "A"}, {"name": "B", "template_id": template_b}],
        "min_sample_per_arm": 10,
        **more,
    }


async def template_b(client: Any) -> str:
    """A second template, differing in its subject line."""
    return await create_template(
        client, name="invitation-b", subject="Save the date, {{ first_name }}!"
    )


async def guests(client: Any, count: int) -> list[str]:
    """``count`` new contacts through the bulk import; their ids."""
    tag = uuid.uuid4().hex[:6]
    rows = [{"email": f"g{i}-{tag}@example.com"} for i in range(count)]
    response = await client.post("/v1/contacts/import", json=rows)
    assert response.status_code == 200, response.text
    listed = await client.get("/v1/contacts", params={"limit": 500})
    return [c["id"] for c in listed.json()["items"] if tag in c["email"]]


async def version_of(sessions: async_sessionmaker[AsyncSession], template: str) -> uuid.UUID:
    """The id of ``template``'s latest version."""
    async with sessions() as session:
        row = await session.get(Template, from_public(IdKind.TEMPLATE, template))
        assert row is not None
        version = await session.scalar(
            select(TemplateVersion.id).where(
                TemplateVersion.template_id == row.id,
                TemplateVersion.version == row.latest_version,
            )
        )
        assert version is not None
        return version


async def mark_sent(sessions: async_sessionmaker[AsyncSession], deliveries: list[Delivery]) -> None:
    """Mark ``deliveries`` handed to the provider (as the worker would)."""
    async with sessions() as session, session.begin():
        ids = [d.id for d in deliveries]
        await session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(status="sent"))


async def opened(
    sessions: async_sessionmaker[AsyncSession],
    deliveries: list[Delivery],
    *,
    machine: bool = False,
    at: datetime | None = None,
) -> None:
    """Mark ``deliveries`` sent and record an open of each (human unless ``machine``)."""
    async with sessions() as session, session.begin():
        ids = [d.id for d in deliveries]
        await session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(status="sent"))
        for d in deliveries:
            session.add(
                TrackingEvent(
                    organization_id=d.organization_id,
                    delivery_id=d.id,
                    kind="open",
                    machine=machine,
                    machine_reason="apple-mpp" if machine else None,
                    user_agent="Mozilla/5.0" if machine else IPHONE,
                    created_at=at or datetime.now(UTC),
                )
            )


async def test_each_guest_gets_the_arm_of_the_hash_and_its_template(database_url: str) -> None:
    """Arms follow ``assign_arm(campaign, contact)``, each arm's deliveries carry its template
    version, a variant naming an unknown template is a 422 naming it, and an edit that fans
    the campaign out again puts every guest in the same arm."""
    async with setup(database_url) as s:
        b = await template_b(s.client)
        await _contacts(s.client, 40)
        bad = {"variants": [{"name": "A"}, {"name": "B", "template_id": "tpl_" + "0" * 32}]}
        response = await s.client.post(
            "/v1/campaigns",
            json={"name": "x", "template_id": s.template, "variables": {"venue": "Como"}}
            | {"experiment": bad},
        )
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "experiment.variants.1.template_id"
        campaign = await _create(s.client, s.template, experiment=experiment(b))
        started = await _start(s.client, campaign["id"])
        await FanoutRunner(sessions=s.sessions, batch_size=7).run_until_idle()
        rows = await _deliveries(s.sessions, started | await _get(s.client, campaign["id"]))
        assert len(rows) == 40
        key = str(from_public(IdKind.CAMPAIGN, campaign["id"]))
        versions = [await version_of(s.sessions, t) for t in (s.template, b)]
        arms = {}
        for row in rows:
            arm = assign_arm(key, str(row.contact_id), [1.0, 1.0])
            assert row.experiment_arm == arm
            assert row.template_version_id == versions[arm]
            arms[row.contact_id] = arm
        assert set(arms.values()) == {0, 1}
        edited = await s.client.patch(f"/v1/campaigns/{campaign['id']}", json={"name": "Again"})
        assert edited.status_code == 200, edited.text
        await FanoutRunner(sessions=s.sessions, batch_size=5).run_until_idle()
        again = await _deliveries(s.sessions, started)
        assert {r.contact_id: r.experiment_arm for r in again} == arms


async def test_results_count_unique_human_opens_and_name_the_winner(database_url: str) -> None:
    """B's guests open far more: the results show each arm's counts as the raw table has
    them (machine opens left out, a second open of a guest counted once) and the sequential
    test declares B with its reason."""
    async with setup(database_url) as s:
        b = await template_b(s.client)
        await guests(s.client, 120)
        campaign = await _create(s.client, s.template, experiment=experiment(b))
        started = await _start(s.client, campaign["id"])
        await FanoutRunner(sessions=s.sessions).run_until_idle()
        rows = await _deliveries(s.sessions, started)
        by_arm = {arm: [r for r in rows if r.experiment_arm == arm] for arm in (0, 1)}
        await opened(s.sessions, by_arm[0], machine=True)  # Apple MPP fetches every A email
        await opened(s.sessions, by_arm[0][:2])
        await opened(s.sessions, by_arm[0][:1])  # the same guest opens twice
        await opened(s.sessions, by_arm[1][: len(by_arm[1]) - 2])
        await opened(s.sessions, by_arm[1][-2:], machine=True)  # sent, opened by machines only
        response = await s.client.get(f"/v1/campaigns/{campaign['id']}/experiment")
        assert response.status_code == 200, response.text
        result = response.json()
        counts = [(a["name"], a["sent"], a["successes"]) for a in result["arms"]]
        assert counts == [
            ("A", len(by_arm[0]), 2),
            ("B", len(by_arm[1]), len(by_arm[1]) - 2),
        ]
        assert result["status"] == "winner"
        assert result["winner"] == "B"
        assert "B" in result["reason"]
        assert result["arms"][1]["probability_best"] > 0.99
        low, high = result["arms"][1]["interval"]
        assert low < result["arms"][1]["rate"] < high
        plain = await _create(s.client, s.template, name="No experiment")
        missing = await s.client.get(f"/v1/campaigns/{plain['id']}/experiment")
        assert missing.status_code == 404


async def test_a_test_fraction_waits_then_rolls_the_winner_out_to_the_rest(
    database_url: str,
) -> None:
    """With a test fraction only the hash's fraction is written and the campaign waits in
    ``testing``; once B wins, the rest of the guests get B, each guest exactly once."""
    async with setup(database_url) as s:
        b = await template_b(s.client)
        contacts = await guests(s.client, 240)
        assert len(contacts) == 240
        campaign = await _create(
            s.client, s.template, experiment=experiment(b, test_fraction=0.5, wait_hours=24)
        )
        started = await _start(s.client, campaign["id"])
        runner = FanoutRunner(sessions=s.sessions, batch_size=9)
        await runner.run_until_idle()
        key = str(from_public(IdKind.CAMPAIGN, campaign["id"]))
        tested = {
            from_public(IdKind.CONTACT, c)
            for c in contacts
            if in_test_fraction(key, str(from_public(IdKind.CONTACT, c)), 0.5)
        }
        rows = await _deliveries(s.sessions, started)
        assert {r.contact_id for r in rows} == tested
        assert (await _get(s.client, campaign["id"]))["status"] == "testing"
        await runner.run_until_idle()  # no result yet: nothing more
        assert len(await _deliveries(s.sessions, started)) == len(tested)
        await mark_sent(s.sessions, rows)
        await opened(s.sessions, [r for r in rows if r.experiment_arm == 1])
        await runner.run_until_idle()
        done = await _get(s.client, campaign["id"])
        assert done["status"] == "completed"
        rows = await _deliveries(s.sessions, started)
        assert len(rows) == len(contacts)
        assert len({r.contact_id for r in rows}) == len(contacts)
        rest = [r for r in rows if r.contact_id not in tested]
        version_b = await version_of(s.sessions, b)
        assert {(r.experiment_arm, r.template_version_id) for r in rest} == {(1, version_b)}
        result = (await s.client.get(f"/v1/campaigns/{campaign['id']}/experiment")).json()
        assert result["phase"] == "rollout"
        assert "winner B" in result["reason"]


async def test_a_test_fraction_without_a_winner_sends_the_control_after_the_wait(
    database_url: str,
) -> None:
    """No winner by the end of the wait: the others get the first variant, and the results
    say why."""
    async with setup(database_url) as s:
        b = await template_b(s.client)
        await _contacts(s.client, 20)
        campaign = await _create(
            s.client, s.template, experiment=experiment(b, test_fraction=0.5, wait_hours=1)
        )
        started = await _start(s.client, campaign["id"])
        runner = FanoutRunner(sessions=s.sessions)
        await runner.run_until_idle()
        async with s.sessions() as session, session.begin():
            row = await session.get(Campaign, from_public(IdKind.CAMPAIGN, campaign["id"]))
            assert row is not None
            past = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
            experiment_json = dict(row.experiment or {})
            experiment_json["state"] = {**experiment_json["state"], "tested_at": past}
            row.experiment = experiment_json
        await runner.run_until_idle()
        assert (await _get(s.client, campaign["id"]))["status"] == "completed"
        rows = await _deliveries(s.sessions, started)
        assert len(rows) == 20
        result = (await s.client.get(f"/v1/campaigns/{campaign['id']}/experiment")).json()
        assert "no winner after 1 h" in result["reason"]
        key = str(from_public(IdKind.CAMPAIGN, campaign["id"]))
        rest = [r for r in rows if not in_test_fraction(key, str(r.contact_id), 0.5)]
        assert rest
        assert {r.experiment_arm for r in rest} == {0}


async def history(s: Setup, contact: str, *, zone: str, local_hour: int, days: int) -> None:
    """``days`` human opens of ``contact`` at ``local_hour`` in ``zone``, one a day."""
    body = {"template_id": s.template, "contact_ids": [contact], "variables": {"venue": "Como"}}
    response = await s.client.post("/v1/messages", json=body)
    assert response.status_code == 202, response.text
    async with s.sessions() as session:
        delivery = await session.scalar(
            select(Delivery).where(Delivery.contact_id == from_public(IdKind.CONTACT, contact))
        )
    assert delivery is not None
    today = datetime.now(ZoneInfo(zone)).date()
    for day in range(1, days + 1):
        local = datetime.combine(today - timedelta(days=day), datetime.min.time())
        at = local.replace(hour=local_hour, tzinfo=ZoneInfo(zone)).astimezone(UTC)
        await opened(s.sessions, [delivery], at=at)


async def test_send_time_sends_each_guest_at_their_best_hour_under_the_cap(
    database_url: str,
) -> None:
    """A night owl in London and an early bird in New York get their own hour in the window;
    a guest with no history falls back to the population's pattern with confidence 0; and
    four guests wanting the same hour are spread so no hour takes over half of them."""
    async with setup(database_url) as s:
        owl = await create_contact(s.client, email="owl@example.com", timezone="Europe/London")
        lark = await create_contact(s.client, email="lark@example.com", timezone="America/New_York")
        new = await create_contact(s.client, email="new@example.com", timezone="Europe/London")
        await history(s, owl, zone="Europe/London", local_hour=21, days=10)
        await history(s, lark, zone="America/New_York", local_hour=6, days=10)
        opens = (datetime.now(UTC) + timedelta(days=2)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        campaign = await _create(
            s.client,
            s.template,
            schedule={"at": opens.isoformat()},
            send_time={"window_hours": 24, "max_share": 1.0},
        )
        started = await _start(s.client, campaign["id"])
        await FanoutRunner(sessions=s.sessions).run_until_idle()
        rows = {r.contact_id: r for r in await _deliveries(s.sessions, started)}
        owl_row = rows[from_public(IdKind.CONTACT, owl)]
        lark_row = rows[from_public(IdKind.CONTACT, lark)]
        new_row = rows[from_public(IdKind.CONTACT, new)]
        assert owl_row.send_at.astimezone(ZoneInfo("Europe/London")).hour == 21
        assert lark_row.send_at.astimezone(ZoneInfo("America/New_York")).hour == 6
        for row in rows.values():
            assert opens <= row.send_at < opens + timedelta(hours=24)
            assert row.status == "scheduled"
        assert owl_row.send_time_confidence is not None
        assert owl_row.send_time_confidence > 0.5  # 10 opens against a prior worth 6
        assert new_row.send_time_confidence == 0
        # the population pattern (owl's and lark's opens, in their zones) peaks at 21:00 and
        # 06:00 local; the newcomer, in London, is sent at one of those
        assert new_row.send_at.astimezone(ZoneInfo("Europe/London")).hour in (21, 6, 20, 22)
        # the same history for four more owls, at most half of them in one hour
        owls = [
            await create_contact(s.client, email=f"owl{i}@example.com", timezone="Europe/London")
            for i in range(4)
        ]
        for contact in owls:
            await history(s, contact, zone="Europe/London", local_hour=21, days=10)
        capped = await _create(
            s.client,
            s.template,
            name="Capped",
            schedule={"at": opens.isoformat()},
            send_time={"window_hours": 24, "max_share": 0.5},
        )
        started = await _start(s.client, capped["id"])
        await FanoutRunner(sessions=s.sessions).run_until_idle()
        rows_capped = await _deliveries(s.sessions, started)
        per_hour: dict[datetime, int] = {}
        for row in rows_capped:
            per_hour[row.send_at] = per_hour.get(row.send_at, 0) + 1
        assert max(per_hour.values()) <= (len(rows_capped) + 1) // 2
