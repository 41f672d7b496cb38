"""The ``guestcomms`` command: run the server, worker or bounce listener, migrate, issue keys,
read the outbox, and ``demo``, which sends a sample wedding invitation to 150 guests through
the real pipeline.

Every command reads settings the same way (environment, optional TOML file); a bad setting
or bad input prints one line to stderr and exits non-zero.

The app (every router and the worker) and the demo are imported inside the commands that run
them: importing them took about 0.9 s of the 2.6 s that every other command, ``--help``
included, spent starting up.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Annotated, Any

import typer
import uvicorn
from pydantic import ValidationError
from rich.table import Table

from guestcomms.audit.recorder import record_cli
from guestcomms.commands.audit import audit_app
from guestcomms.commands.campaigns import campaign_app
from guestcomms.commands.contacts import contacts_app
from guestcomms.commands.data_keys import (
    change_master_key_command,
    master_key,
    rotate_data_key_command,
)
from guestcomms.commands.dkim import dkim_app
from guestcomms.commands.keys import keys_list, keys_revoke
from guestcomms.commands.privacy import privacy_app
from guestcomms.commands.support import (
    console,
    database_session,
    err_console,
    fail,
    organization_session,
    pairs_or_exit,
    run_async,
    settings_or_exit,
    upgrade_or_exit,
)
from guestcomms.db.engine import create_session_factory, engine_for
from guestcomms.db.notify import notify_workers
from guestcomms.domain.enums import DeliveryStatus
from guestcomms.domain.ids import IdKind, InvalidIdError, from_public, to_public
from guestcomms.engine.bounces import BounceListener
from guestcomms.engine.metrics import serve_metrics
from guestcomms.errors import NotFoundError
from guestcomms.inbound.bounce_repository import BounceRepository
from guestcomms.messages.repository import MessageRepository
from guestcomms.messages.service import replay_dead
from guestcomms.organizations.repository import OrganizationRepository
from guestcomms.organizations.service import DEFAULT_SCOPES, issue_key
from guestcomms.outbox.repository import OutboxRepository
from guestcomms.providers.repository import ProviderRepository
from guestcomms.providers.schemas import ProviderCreate
from guestcomms.providers.service import ProviderService

app = typer.Typer(
    name="guestcomms",
    help="Guest communications for weddings and events.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_app = typer.Typer(
    help="API keys, and the keys of the encryption at rest.", no_args_is_help=True
)
providers_app = typer.Typer(help="Provider accounts of an organization.", no_args_is_help=True)
deliveries_app = typer.Typer(
    help="Deliveries: the dead letters, and replaying them.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(deliveries_app, name="deliveries")
app.add_typer(providers_app, name="providers")
app.add_typer(contacts_app, name="contacts")
app.add_typer(campaign_app, name="campaign")
app.add_typer(audit_app, name="audit")
app.add_typer(dkim_app, name="dkim")
app.add_typer(privacy_app, name="privacy")

Host = Annotated[str, typer.Option(help="address to listen on")]
Port = Annotated[int, typer.Option(help="port to listen on", min=1, max=65535)]


@app.command()
def serve(host: Host = "127.0.0.1", port: Port = 8000) -> None:
    """Run the API, the worker and the scheduler in one process (upgrades the database first)."""
    from guestcomms.app import create_app  # noqa: PLC0415 - lazy: see the module docstring

    settings = settings_or_exit()
    upgrade_or_exit(settings)
    console.print(f"guestcomms on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    uvicorn.run(
        create_app(settings, embedded_worker=True), host=host, port=port, log_level="warning"
    )


@app.command()
def api(host: Host = "127.0.0.1", port: Port = 8000) -> None:
    """Run the HTTP API only (production: run workers separately)."""
    from guestcomms.app import create_app  # noqa: PLC0415 - lazy: see the module docstring

    settings = settings_or_exit()
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


@app.command()
def worker(
    metrics_host: Annotated[
        str, typer.Option(help="address of the metrics endpoint (with GUESTCOMMS_METRICS_PORT)")
    ] = "127.0.0.1",
) -> None:
    """Run a worker: claim due deliveries and send them until SIGTERM or SIGINT. With
    GUESTCOMMS_METRICS_PORT set, its Prometheus metrics are served on that port."""
    from guestcomms.app import create_worker, run_worker  # noqa: PLC0415 - lazy: see the module docstring

    settings = settings_or_exit()

    async def main() -> None:
        instance = create_worker(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, instance.stop)
        server = None
        if settings.metrics_port is not None:
            token = settings.metrics_token
            server, _ = serve_metrics(
                instance.dispatcher.metrics,
                host=metrics_host,
                port=settings.metrics_port,
                token=token.get_secret_value() if token else None,
            )
        try:
            await run_worker(instance, settings)
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()

    run_async(main)


@app.command()
def bounces(host: Host = "127.0.0.1", port: Port = 2525) -> None:
    """Receive bounce and complaint reports by SMTP for the bounce domain, until SIGTERM or
    SIGINT (point the bounce domain's MX here; --host 0.0.0.0 to listen on every interface)."""
    settings = settings_or_exit()
    domain = settings.bounce_domain
    if not domain:
        raise fail("bounce_domain is not set (GUESTCOMMS_BOUNCE_DOMAIN)")

    async def main() -> None:
        engine = engine_for(settings)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        try:
            sessions = create_session_factory(engine)
            async with BounceListener(host, port, sessions=sessions, bounce_domain=domain):
                console.print(f"receiving bounces for {domain} on {host}:{port}", highlight=False)
                await stopping.wait()
        finally:
            await engine.dispose()

    run_async(main)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    settings = settings_or_exit()
    upgrade_or_exit(settings)
    console.print("database is up to date")


@keys_app.command("create")
def keys_create(
    org: Annotated[str, typer.Option("--org", help="organization name (created if new)")],
    name: Annotated[str, typer.Option(help="a label for the key")] = "",
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="a scope; repeat for more (default admin)")
    ] = None,
    rate_limit: Annotated[
        int | None, typer.Option(help="requests per minute (default: the server's)", min=1)
    ] = None,
) -> None:
    """Create an API key for an organization and print it (it is shown only once)."""
    settings = settings_or_exit()
    upgrade_or_exit(settings)

    async def main() -> str:
        async with database_session(settings) as session:
            issued = await issue_key(
                OrganizationRepository(session),
                organization_name=org,
                key_name=name,
                scopes=tuple(scope) if scope else DEFAULT_SCOPES,
                rate_limit=rate_limit,
            )
            await record_cli(
                session,
                organization_id=issued.organization.id,
                action="keys.create",
                target=to_public(IdKind.API_KEY, issued.key.id),
                detail={"scopes": sorted(issued.key.scopes)},
            )
        return issued.plaintext

    key = run_async(main)
    # the key alone on stdout, so `KEY=$(guestcomms keys create --org X)` works
    print(key)
    err_console.print("Store this key now: it cannot be shown again.")


keys_app.command("list")(keys_list)
keys_app.command("revoke")(keys_revoke)
keys_app.command("master-key")(master_key)
keys_app.command("rotate-data-key")(rotate_data_key_command)
keys_app.command("change-master-key")(change_master_key_command)


@providers_app.command("add")
def providers_add(
    org: Annotated[str, typer.Option("--org", help="organization name")],
    name: Annotated[str, typer.Option(help="a name for the account, e.g. sendgrid-main")],
    kind: Annotated[str, typer.Option(help="sendgrid, postmark, twilio_sms, webpush, ...")],
    setting: Annotated[
        list[str] | None, typer.Option("--setting", help="KEY=VALUE; repeat for more")
    ] = None,
    credential: Annotated[
        list[str] | None, typer.Option("--credential", help="KEY=VALUE secret; repeat for more")
    ] = None,
    priority: Annotated[int, typer.Option(help="lower is tried first")] = 0,
    rate: Annotated[float | None, typer.Option(help="sends per second at most")] = None,
) -> None:
    """Configure a provider account (its settings are checked by building the provider)."""
    settings = settings_or_exit()
    try:
        data = ProviderCreate(
            name=name,
            kind=kind,
            settings=pairs_or_exit(setting, option="--setting"),
            credentials=pairs_or_exit(credential, option="--credential"),
            priority=priority,
            rate_per_second=rate,
        )
    except ValidationError as e:
        first = e.errors()[0]
        raise fail(f"--{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None

    async def main() -> str:
        async with organization_session(settings, org) as (session, organization):
            service = ProviderService(ProviderRepository(session, organization.id))
            account = await service.create(data)
            public = to_public(IdKind.PROVIDER, account.id)
            await record_cli(
                session,
                organization_id=organization.id,
                action="providers.add",
                target=public,
                detail={"kind": kind, "settings": sorted(data.settings)},
            )
            return public

    console.print(f"provider {name} added: {run_async(main)}")


@providers_app.command("list")
def providers_list(org: Annotated[str, typer.Option("--org", help="organization name")]) -> None:
    """List an organization's provider accounts (never their credentials)."""
    settings = settings_or_exit()

    async def main() -> list[Any]:
        async with organization_session(settings, org) as (session, organization):
            return list(await ProviderRepository(session, organization.id).all())

    table = Table(title=f"{org}: provider accounts")
    for column in ("name", "kind", "channel", "priority", "rate/s", "status"):
        table.add_column(column, no_wrap=column == "name")
    for account in run_async(main):
        table.add_row(
            account.name,
            account.kind,
            account.channel,
            str(account.priority),
            "" if account.rate_per_second is None else f"{account.rate_per_second:g}",
            account.status if account.enabled else "disabled",
        )
    console.print(table)


@deliveries_app.command("list")
def deliveries_list(
    org: Annotated[str, typer.Option("--org", help="organization name")],
    status: Annotated[str, typer.Option(help="only this status")] = "dead",
    limit: Annotated[int, typer.Option(help="how many", min=1, max=1000)] = 50,
) -> None:
    """List an organization's deliveries in one status (the dead letters by default)."""
    settings = settings_or_exit()
    try:
        wanted = DeliveryStatus(status)
    except ValueError:
        raise fail(
            f"unknown status {status!r}; one of {', '.join(s.value for s in DeliveryStatus)}"
        ) from None

    async def main() -> list[Any]:
        async with organization_session(settings, org) as (session, organization):
            repo = MessageRepository(session, organization.id)
            return list(await repo.deliveries_by_status(wanted.value, after=None, limit=limit))

    rows = run_async(main)
    table = Table(title=f"{org}: {len(rows)} {wanted.value} deliveries")
    table.add_column("delivery", no_wrap=True)  # an id must stay whole to be pasted
    for column in ("channel", "attempts", "provider", "last error"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            to_public(IdKind.DELIVERY, row.id),
            row.channel,
            str(row.attempts),
            row.provider or "",
            (row.last_error or "")[:80],
        )
    console.print(table)


@deliveries_app.command("replay")
def deliveries_replay(
    delivery: Annotated[str, typer.Argument(help="a dead delivery's id (dlv_...)")],
) -> None:
    """Queue a dead delivery again, with its original idempotency key."""
    settings = settings_or_exit()
    try:
        key = from_public(IdKind.DELIVERY, delivery)
    except InvalidIdError as e:
        raise fail(str(e)) from None

    async def main() -> None:
        async with database_session(settings) as session:
            organization_id = await BounceRepository(session).organization_of(key)
            if organization_id is None:
                raise NotFoundError(f"no delivery {delivery}")
            await replay_dead(MessageRepository(session, organization_id), key)
            await record_cli(
                session,
                organization_id=organization_id,
                action="deliveries.replay",
                target=delivery,
            )
            await notify_workers(session)

    run_async(main)
    console.print(f"{delivery} queued again")


@app.command()
def outbox(
    limit: Annotated[int, typer.Option(help="how many messages", min=1, max=1000)] = 20,
) -> None:
    """Show the newest emails the dev outbox stored."""
    settings = settings_or_exit()

    async def main() -> list[Any]:
        async with database_session(settings) as session:
            return list(await OutboxRepository(session, None).page(before=None, limit=limit))

    rows = run_async(main)
    table = Table(title=f"dev outbox: newest {len(rows)}")
    for column in ("when (UTC)", "to", "subject", "Message-ID"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            row.recipient,
            row.subject,
            row.message_id_header,
        )
    console.print(table)


# --- demo -----------------------------------------------------------------------------------


@app.command()
def demo() -> None:
    """Invite 150 sample guests of "Demo Wedding" and send it through a real worker.

    Safe to run again: the guests are updated, not duplicated, and each run sends a new
    message. Without an SMTP host the emails land in the dev outbox.
    """
    from guestcomms import demo as demo_module  # noqa: PLC0415 - lazy: see the module docstring

    settings = settings_or_exit()
    demo_module.quiet_logging(settings)
    upgrade_or_exit(settings)

    async def main() -> tuple[demo_module.DemoMessage, dict[str, int]]:
        engine = engine_for(settings)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                written = await demo_module.setup(session, settings)
            return written, await demo_module.send_with_progress(settings, engine, written)
        finally:
            await engine.dispose()

    written, counts = run_async(main)
    demo_module.summary(settings, written, counts)


def main() -> None:
    """Entry point of the ``guestcomms`` script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
