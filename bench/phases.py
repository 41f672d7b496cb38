"""Where the time goes, phase by phase: ``python -m bench.phases`` (a diagnosis, not a figure).

In one process, on a fresh database: insert the guests directly, then run the real fan-out
(``MessageService.create`` in one transaction, as ``POST /v1/messages`` does) and the real
worker (``create_worker(settings)``, drained with ``run_until_idle``: one lane, batch after
batch). The worker's steps are timed by wrapping the functions it calls (in this process
only; nothing in ``src/`` changes): claim, compose (with its contact load and renders),
the provider's ``send_batch`` (with MIME building and SMTP transactions), and the record.

``--cprofile DIR`` also runs the fan-out and the worker under cProfile, writes the ``.prof``
files there and prints the top functions of each (cProfile slows Python code down, so read
its shares, not its seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import pstats
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from rich.table import Table
from sqlalchemy import insert

from bench import content
from bench.procs import start_sink
from bench.report import machine, make_console
from bench.stores import DEFAULT_ADMIN_DSN, Store, postgres_store, sqlite_store
from guestcomms.app import create_worker
from guestcomms.channels import smtp as smtp_module
from guestcomms.channels.base import Provider
from guestcomms.config import Settings
from guestcomms.contacts.models import Contact
from guestcomms.contacts.repository import ContactRepository
from guestcomms.db import migrate, queue
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.domain.clock import utc_now
from guestcomms.domain.ids import IdKind, new_id, to_public
from guestcomms.engine.composer import Composer
from guestcomms.events.repository import EventRepository
from guestcomms.messages.repository import MessageRepository
from guestcomms.messages.schemas import MessageCreate
from guestcomms.messages.service import MessageService
from guestcomms.organizations.models import Organization
from guestcomms.templates.repository import TemplateRepository
from guestcomms.templates.sandbox import TemplateRenderer
from guestcomms.templates.schemas import TemplateCreate
from guestcomms.templates.service import TemplateService

console = make_console()
INSERT_CHUNK = 2000
TOP_FUNCTIONS = 25


@dataclass
class Timer:
    """Calls and wall seconds of one wrapped function."""

    calls: int = 0
    seconds: float = 0.0


class Phases:
    """Wraps functions with timers; undoes every wrap on :meth:`restore`."""

    def __init__(self) -> None:
        self.timers: dict[str, Timer] = {}
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, attribute: str, label: str) -> None:
        """Time every call of ``owner.attribute`` (sync or async) under ``label``.

        An attribute that no longer exists (the code moved on) is skipped with a note.
        """
        original = getattr(owner, attribute, None)
        if original is None:
            console.print(f"[yellow]not timed (no {owner.__name__}.{attribute}): {label}[/]")
            return
        timer = self.timers.setdefault(label, Timer())
        if asyncio.iscoroutinefunction(original):

            @functools.wraps(original)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    timer.calls += 1
                    timer.seconds += time.perf_counter() - started

            replacement: Any = timed_async
        else:

            @functools.wraps(original)
            def timed(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    timer.calls += 1
                    timer.seconds += time.perf_counter() - started

            replacement = timed
        setattr(owner, attribute, replacement)
        self._undo.append(lambda: setattr(owner, attribute, original))

    def restore(self) -> None:
        """Put every original back."""
        while self._undo:
            self._undo.pop()()


async def seed(store: Store, count: int) -> tuple[uuid.UUID, list[str], str]:
    """Migrate, then insert an organization, ``count`` guests and the template."""
    await migrate.upgrade_async(store.url)
    engine = create_engine(store.url)
    try:
        sessions = create_session_factory(engine)
        now = utc_now()
        async with sessions() as session, session.begin():
            org = Organization(name="bench")
            session.add(org)
            await session.flush()
            rows = [
                {"id": new_id(), "organization_id": org.id, "created_at": now, "updated_at": now}
                | guest
                for guest in content.guests(count)
            ]
            conn = await session.connection()
            for first in range(0, count, INSERT_CHUNK):
                await conn.execute(insert(Contact), rows[first : first + INSERT_CHUNK])
            template, _ = await TemplateService(TemplateRepository(session, org.id)).create(
                TemplateCreate.model_validate(content.template_body())
            )
        ids = [to_public(IdKind.CONTACT, cast(uuid.UUID, r["id"])) for r in rows]
        return org.id, ids, to_public(IdKind.TEMPLATE, template.id)
    finally:
        await engine.dispose()


async def fan_out(
    store: Store,
    org_id: uuid.UUID,
    contact_ids: list[str],
    template_id: str,
    phases: Phases,
    profile: cProfile.Profile | None,
) -> float:
    """Write the message and its deliveries as the API does; return the seconds it took."""
    engine = create_engine(store.url)
    phases.wrap(ContactRepository, "existing_ids", "fan-out: check contacts exist")
    phases.wrap(MessageRepository, "insert_deliveries", "fan-out: insert deliveries")
    try:
        sessions = create_session_factory(engine)
        body = MessageCreate(
            template_id=template_id, contact_ids=contact_ids, variables=content.VARIABLES
        )
        started = time.perf_counter()
        if profile is not None:
            profile.enable()
        try:
            async with sessions() as session:
                async with session.begin():
                    await MessageService(
                        messages=MessageRepository(session, org_id),
                        contacts=ContactRepository(session, org_id),
                        templates=TemplateRepository(session, org_id),
                        events=EventRepository(session, org_id),
                        max_recipients=len(contact_ids),
                    ).create(body)
                    commit_started = time.perf_counter()
                phases.timers["fan-out: commit"] = Timer(1, time.perf_counter() - commit_started)
        finally:
            if profile is not None:
                profile.disable()
        return time.perf_counter() - started
    finally:
        await engine.dispose()


def _provider_classes() -> list[type[Provider[Any]]]:
    """Provider and every subclass that defines its own ``send_batch``."""
    found: list[type[Provider[Any]]] = []
    pending: list[type[Provider[Any]]] = [cast(type[Provider[Any]], Provider)]
    while pending:
        cls = pending.pop()
        if "send_batch" in vars(cls):
            found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def wrap_worker(phases: Phases) -> None:
    """Time the worker's steps. Module functions and classes are wrapped, not the worker's
    own attributes, so the timing holds whatever the worker's internals look like."""
    phases.wrap(queue, "claim_batch", "worker: claim batch")
    phases.wrap(Composer, "compose", "worker: compose (total)")
    phases.wrap(Composer, "_load_contacts", "worker: compose: load contacts")
    phases.wrap(TemplateRenderer, "render", "worker: compose: render (per email)")
    for cls in _provider_classes():
        phases.wrap(cls, "send_batch", f"worker: {cls.__name__}.send_batch (total)")
    phases.wrap(smtp_module, "build_email_bytes", "worker: smtp: build MIME (per email)")
    phases.wrap(smtp_module.SmtpProvider, "_transaction", "worker: smtp: SMTP transaction")
    phases.wrap(queue, "record_outcomes", "worker: record outcomes")


async def drain(settings: Settings, phases: Phases, profile: cProfile.Profile | None) -> float:
    """Run a real worker until nothing is due; return the seconds it took."""
    wrap_worker(phases)
    worker = create_worker(settings)
    async with worker:
        started = time.perf_counter()
        if profile is not None:
            profile.enable()
        try:
            processed = await worker.run_until_idle()
        finally:
            if profile is not None:
                profile.disable()
        seconds = time.perf_counter() - started
    if worker.stats.sent != processed:
        console.print(f"[red]only {worker.stats.sent} of {processed} sent: {worker.stats}[/]")
    return seconds


@contextlib.asynccontextmanager
async def the_store(kind: str, workdir: Path, admin_dsn: str) -> AsyncIterator[Store]:
    """A fresh database of ``kind``."""
    if kind == "sqlite":
        async with sqlite_store(workdir) as sqlite:
            yield sqlite
    else:
        async with postgres_store(admin_dsn) as postgres:
            yield postgres


def phase_table(phases: Phases, *, recipients: int, fan_out_s: float, drain_s: float) -> Table:
    """The timers, with their share of the fan-out or of the worker's drain."""
    table = Table(title=f"Phases for {recipients:,} deliveries (one lane, wall time)")
    table.add_column("phase")
    for name in ("calls", "seconds", "us per delivery", "share"):
        table.add_column(name, justify="right")
    table.add_row("fan-out (MessageService.create + commit)", "1", f"{fan_out_s:.2f}", "", "")
    table.add_row("worker drain (run_until_idle)", "", f"{drain_s:.2f}", "", "100%")
    for label, timer in phases.timers.items():
        if not timer.calls:
            continue
        whole = fan_out_s if label.startswith("fan-out") else drain_s
        table.add_row(
            label,
            f"{timer.calls:,}",
            f"{timer.seconds:.2f}",
            f"{timer.seconds / recipients * 1e6:,.0f}",
            f"{timer.seconds / whole:.0%}" if whole else "",
        )
    table.caption = (
        f"fan-out {recipients / fan_out_s:,.0f} deliveries/s; "
        f"worker {recipients / drain_s:,.0f} deliveries/s. Nested phases overlap their parent."
    )
    return table


async def main_async(args: argparse.Namespace) -> None:
    """Seed, fan out, drain, print."""
    console.print(f"[bold]guestcomms phases[/]  {machine()}")
    workdir = Path(tempfile.mkdtemp(prefix="gc-phases-"))
    phases = Phases()
    profiles = {"fan-out": cProfile.Profile(), "worker": cProfile.Profile()}
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        store = await stack.enter_async_context(the_store(args.store, workdir, args.postgres))
        overrides: dict[str, Any] = {"database_url": store.url, "log_level": "WARNING"}
        if args.sink == "smtp":
            sink, port = await start_sink(workdir)
            stack.push_async_callback(sink.stop)
            overrides |= {"smtp_host": "127.0.0.1", "smtp_port": port}
        org_id, contact_ids, template_id = await seed(store, args.recipients)
        try:
            fan_out_s = await fan_out(
                store,
                org_id,
                contact_ids,
                template_id,
                phases,
                profiles["fan-out"] if args.cprofile else None,
            )
            drain_s = await drain(
                Settings(**overrides), phases, profiles["worker"] if args.cprofile else None
            )
        finally:
            phases.restore()
    table = phase_table(phases, recipients=args.recipients, fan_out_s=fan_out_s, drain_s=drain_s)
    table.title = f"{args.store} / {args.sink}: {table.title}"
    console.print(table)
    if args.cprofile:
        args.cprofile.mkdir(parents=True, exist_ok=True)
        for name, profile in profiles.items():
            path = args.cprofile / f"{args.store}-{args.sink}-{name}.prof"
            profile.dump_stats(path)
            console.print(f"[bold]cProfile of the {name}[/] ({path}), top by own time:")
            stats = pstats.Stats(profile, stream=sys.stdout)
            stats.sort_stats("tottime").print_stats(TOP_FUNCTIONS)


def main() -> None:
    """Entry point: ``python -m bench.phases [--store S] [--sink S] [--recipients N]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.phases", description=__doc__)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--sink", choices=("outbox", "smtp"), default="outbox")
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--postgres", default=DEFAULT_ADMIN_DSN)
    parser.add_argument(
        "--cprofile", type=Path, help="profile the fan-out and the worker; write .prof files here"
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
