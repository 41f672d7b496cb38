"""``guestcomms campaign``: create, preview, start (and watch the fan-out with a progress
bar), pause, resume, cancel, and show the status of an organization's campaigns."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guestcomms.audit.recorder import record_cli
from guestcomms.campaigns.fanout import fan_out, take
from guestcomms.campaigns.repository import CampaignRepository
from guestcomms.campaigns.schemas import CampaignControl, CampaignCreate, CampaignOut
from guestcomms.campaigns.service import CampaignService
from guestcomms.commands.support import (
    console,
    fail,
    organization_session,
    pairs_or_exit,
    run_async,
    settings_or_exit,
    upgrade_or_exit,
)
from guestcomms.db.engine import create_session_factory, engine_for
from guestcomms.db.notify import notify_workers
from guestcomms.domain.ids import IdKind, InvalidIdError, from_public, to_public
from guestcomms.errors import ValidationFailedError
from guestcomms.templates.repository import TemplateRepository

campaign_app = typer.Typer(help="Campaigns: a template to an audience.", no_args_is_help=True)

POLL_SECONDS = 0.5  # while another process fans the campaign out, how often --wait looks
T = TypeVar("T")

Org = Annotated[str, typer.Option("--org", help="organization name")]
CampaignArg = Annotated[str, typer.Argument(help="the campaign (cmp_...)", show_default=False)]


def _run(org: str, work: Callable[[CampaignService, AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction against ``org``'s campaigns; a validation error is one
    line naming the field, and exit 1."""
    settings = settings_or_exit()
    upgrade_or_exit(settings)

    async def main() -> T:
        try:
            async with organization_session(settings, org) as (session, organization):
                repo = CampaignRepository(session, organization.id)
                service = CampaignService(repo, TemplateRepository(session, organization.id))
                return await work(service, session)
        except ValidationFailedError as e:
            raise ValidationFailedError(f"{e.field}: {e.message}" if e.field else e.message) from e

    return run_async(main)


def _key(campaign: str) -> Any:
    try:
        return from_public(IdKind.CAMPAIGN, campaign)
    except InvalidIdError as e:
        raise fail(str(e)) from None


def _schedule(
    at: str | None, local_time: str | None, date: str | None, days_before: int | None
) -> dict[str, Any]:
    schedule: dict[str, Any] = {}
    if at is not None:
        schedule["at"] = at
    if local_time is not None:
        schedule["local_time"] = local_time
    if date is not None:
        schedule["date"] = date
    if days_before is not None:
        schedule["days_before_event"] = days_before
    return schedule  # checked by the service: e.g. --local-time needs --date or --days-...


def _recurrence(
    every: int | None, count: int | None, condition: str | None
) -> dict[str, Any] | None:
    if every is None:
        if count is not None or condition is not None:
            raise fail("--count and --while need --every-days")
        return None
    recurrence: dict[str, Any] = {"every_days": every}
    if count is not None:
        recurrence["count"] = count
    if condition is not None:
        recurrence["while"] = condition
    return recurrence


@campaign_app.command("create")
def create(
    org: Org,
    name: Annotated[str, typer.Option(help="a name for the campaign")],
    template: Annotated[str, typer.Option(help="template id (tpl_...) or name")],
    filter_: Annotated[str, typer.Option("--filter", help="e.g. 'rsvp = \"pending\"'")] = "",
    audience: Annotated[str | None, typer.Option(help="a saved audience (aud_...)")] = None,
    event: Annotated[str | None, typer.Option(help="the event (evt_...)")] = None,
    at: Annotated[str | None, typer.Option(help="send at this instant (ISO 8601)")] = None,
    local_time: Annotated[
        str | None, typer.Option(help="HH:MM in each guest's zone, with --date or --days-...")
    ] = None,
    date: Annotated[str | None, typer.Option(help="YYYY-MM-DD, with --local-time")] = None,
    days_before_event: Annotated[int | None, typer.Option(help="with --local-time")] = None,
    every_days: Annotated[int | None, typer.Option(help="repeat every N days")] = None,
    count: Annotated[int | None, typer.Option(help="occurrences in all (first included)")] = None,
    while_: Annotated[
        str | None, typer.Option("--while", help="repeat only while this filter holds")
    ] = None,
    priority: Annotated[str, typer.Option(help="emergency, high, normal or low")] = "normal",
    var: Annotated[list[str] | None, typer.Option(help="NAME=VALUE; repeat for more")] = None,
    channel: Annotated[list[str] | None, typer.Option(help="a channel; repeat, in order")] = None,
) -> None:
    """Create a draft campaign (checked like the API: template variables, filter, schedule)."""
    try:
        body = CampaignCreate(
            name=name,
            # a name is looked up in the organization below; the id checks the rest now
            template_id=template if template.startswith("tpl_") else "tpl_" + "0" * 32,
            filter=filter_,
            audience_id=audience,
            event_id=event,
            priority=priority,
            variables=pairs_or_exit(var, option="--var", shape="NAME=VALUE"),
            channels=channel or None,
            schedule=_schedule(at, local_time, date, days_before_event),
            recurrence=_recurrence(every_days, count, while_),
        )
    except ValidationError as e:
        first = e.errors()[0]
        raise fail(f"--{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None

    async def work(service: CampaignService, session: AsyncSession) -> CampaignOut:
        data = body
        if not template.startswith("tpl_"):
            found = await TemplateRepository(session, service.organization_id).by_name(template)
            if found is None:
                raise ValidationFailedError(f"no template named {template!r}", field="template")
            data = body.model_copy(update={"template_id": to_public(IdKind.TEMPLATE, found.id)})
        view = await service.view(await service.create(data))
        await record_cli(
            session,
            organization_id=service.organization_id,
            action="campaign.create",
            target=view.id,
        )
        return view

    created = _run(org, work)
    console.print(f"campaign {created.name!r} created: {created.id}", highlight=False)


@campaign_app.command("preview")
def preview(org: Org, campaign: CampaignArg, sample: int = 10) -> None:
    """How many guests the campaign reaches now, a sample, and the first send times per zone."""
    key = _key(campaign)

    async def work(service: CampaignService, _: AsyncSession) -> Any:
        return await service.preview(key, sample_size=sample)

    shown = _run(org, work)
    console.print(f"{shown.count} guest(s)")
    table = Table(title="first send times")
    table.add_column("zone")
    table.add_column("UTC")
    for zone in shown.schedule:
        table.add_row(zone.timezone, ", ".join(t.strftime("%Y-%m-%d %H:%M") for t in zone.instants))
    console.print(table)


@campaign_app.command("start")
def start(
    org: Org,
    campaign: CampaignArg,
    wait: Annotated[bool, typer.Option(help="fan out here, with a progress bar")] = False,
) -> None:
    """Start a draft. The workers fan it out; with --wait this command does (or watches)."""
    key = _key(campaign)

    async def work(service: CampaignService, session: AsyncSession) -> tuple[CampaignOut, Any]:
        started = await service.start(key)
        await record_cli(
            session,
            organization_id=service.organization_id,
            action="campaign.start",
            target=campaign,
        )
        await notify_workers(session)
        return await service.view(started), service.organization_id

    started, organization_id = _run(org, work)
    console.print(f"{started.id} started: {started.total} guest(s)", highlight=False)
    if wait:
        final = _watch(started, organization_id)
        console.print(
            f"{final.id} {final.status}: {final.processed} of {final.total} guest(s), "
            f"{final.created} deliveries",
            highlight=False,
        )


def _watch(started: CampaignOut, organization_id: Any) -> CampaignOut:
    """Fan the campaign out here (or follow another runner), with a progress bar."""
    settings = settings_or_exit()
    key = from_public(IdKind.CAMPAIGN, started.id)

    async def main() -> CampaignOut:
        engine = engine_for(settings)
        try:
            sessions = create_session_factory(engine)
            with Progress(
                TextColumn("fanning out"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as bar:
                task = bar.add_task("guests", total=max(started.total, 1))
                lease = await take(sessions, key, lease_seconds=settings.lease_seconds)
                if lease is not None:
                    await fan_out(
                        sessions,
                        lease,
                        batch_size=settings.campaign_batch_size,
                        lease_seconds=settings.lease_seconds,
                        on_progress=lambda p: bar.update(
                            task, completed=p.processed, total=max(p.total, 1)
                        ),
                    )
                return await _follow(
                    sessions,
                    key,
                    organization_id,
                    lambda v: bar.update(task, completed=v.processed, total=max(v.total, 1)),
                )
        finally:
            await engine.dispose()

    return run_async(main)


async def _follow(
    sessions: async_sessionmaker[AsyncSession],
    key: Any,
    organization_id: Any,
    show: Callable[[CampaignOut], None],
) -> CampaignOut:
    """Poll the campaign until it is no longer running (another runner fans it out)."""
    while True:
        async with sessions() as session:
            service = CampaignService(
                CampaignRepository(session, organization_id),
                TemplateRepository(session, organization_id),
            )
            view = await service.view(await service.get(key))
        show(view)
        if view.status != "running":
            return view
        await asyncio.sleep(POLL_SECONDS)


def _control(org: str, campaign: str, action: str) -> None:
    key = _key(campaign)

    async def work(service: CampaignService, session: AsyncSession) -> CampaignControl:
        result: CampaignControl = await getattr(service, action)(key)
        await record_cli(
            session,
            organization_id=service.organization_id,
            action=f"campaign.{action}",
            target=campaign,
        )
        await notify_workers(session)
        return result

    done = _run(org, work)
    note = f"; {done.not_changed} already claimed or finished" if done.not_changed else ""
    verb = {"pause": "held", "resume": "released", "cancel": "cancelled"}[action]
    console.print(
        f"{done.id} {done.status}: {done.changed} deliveries {verb}{note}", highlight=False
    )


@campaign_app.command("pause")
def pause(org: Org, campaign: CampaignArg) -> None:
    """Stop the fan-out and hold every delivery not yet claimed."""
    _control(org, campaign, "pause")


@campaign_app.command("resume")
def resume(org: Org, campaign: CampaignArg) -> None:
    """Release a paused campaign's deliveries and let its fan-out go on."""
    _control(org, campaign, "resume")


@campaign_app.command("cancel")
def cancel(org: Org, campaign: CampaignArg) -> None:
    """Stop the fan-out and cancel every delivery not yet claimed."""
    _control(org, campaign, "cancel")


@campaign_app.command("status")
def status(
    org: Org,
    campaign: Annotated[str | None, typer.Argument(help="one campaign; all if absent")] = None,
) -> None:
    """A table of the organization's campaigns (or of one, with its deliveries by status)."""
    key = _key(campaign) if campaign else None

    async def work(service: CampaignService, _: AsyncSession) -> list[CampaignOut]:
        if key is not None:
            return [await service.view(await service.get(key))]
        return [await service.view(c) for c in await service.all()]

    views = _run(org, work)
    table = Table(title=f"{org}: campaigns")
    table.add_column("campaign", no_wrap=True)
    for column in ("name", "status", "guests", "deliveries", "by status"):
        table.add_column(column)
    for view in views:
        table.add_row(
            view.id,
            view.name,
            view.status,
            f"{view.processed}/{view.total}",
            str(view.created),
            ", ".join(f"{s} {n}" for s, n in sorted(view.counts.items())),
        )
    console.print(table)
