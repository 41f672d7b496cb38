"""``guestcomms keys master-key``, ``keys rotate-data-key`` and ``keys change-master-key``:
the keys of the encryption at rest of personal fields (docs/operations.md, "Encryption at
rest")."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from guestcomms.audit.recorder import record_cli
from guestcomms.commands.support import (
    console,
    database_session,
    fail,
    run_async,
    settings_or_exit,
)
from guestcomms.db.engine import engine_for
from guestcomms.security.encryption import encode_key, new_key, parse_master_key
from guestcomms.security.master_change import change_master_key
from guestcomms.security.rotation import RotationReport, rotate_data_key, rows_to_scan

SETTLE_MARGIN_SECONDS = 2.0  # beyond the other processes' refresh interval


def master_key() -> None:
    """Print a new random master key (base64) for GUESTCOMMS_MASTER_KEY.

    Keep it outside the database (a secret manager); without it the encrypted fields cannot
    be read, and no one can recover them."""
    console.print(encode_key(new_key()), highlight=False, soft_wrap=True)


def change_master_key_command(
    new_master_key: Annotated[
        str,
        typer.Option(
            "--new-master-key",
            envvar="GUESTCOMMS_NEW_MASTER_KEY",
            prompt="new master key",
            hide_input=True,
            show_default=False,
            help="the new key (`guestcomms keys master-key` makes one); prefer the "
            "GUESTCOMMS_NEW_MASTER_KEY variable or the prompt to the command line, which "
            "shells keep in their history",
        ),
    ],
) -> None:
    """Wrap every data key under a new master key (GUESTCOMMS_MASTER_KEY holds the current
    one). No encrypted value is rewritten; restart every process with the new key next."""
    settings = settings_or_exit()
    old = settings.master_key_bytes
    if old is None:
        raise fail(
            "encryption at rest is off: GUESTCOMMS_MASTER_KEY must hold the current master key"
        )
    try:
        new = parse_master_key(new_master_key)
    except ValueError as e:
        raise fail(f"the new master key {e}") from None
    if new == old:
        raise fail("the new master key is the current one: make one with `keys master-key`")

    async def main() -> list[str]:
        async with database_session(settings) as session:
            rewrapped = await change_master_key(session, old, new)
            await record_cli(
                session,
                organization_id=None,
                action="keys.change-master-key",
                target=None,
                detail={"data_keys": rewrapped},
            )
            return rewrapped

    rewrapped = run_async(main)
    console.print(
        f"{len(rewrapped)} data key(s) ({', '.join(rewrapped)}) now wrapped under the new "
        "master key. Set GUESTCOMMS_MASTER_KEY to it on every process and restart them, "
        "before any `keys rotate-data-key`; keep the old key as long as backups taken "
        "before now are kept.",
        highlight=False,
    )


def rotate_data_key_command(
    settle: Annotated[
        float | None,
        typer.Option(
            "--settle",
            min=0,
            help="seconds to wait after activating the new key before re-encrypting "
            "(default: data_key_refresh_seconds + 2, so every running process uses it)",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=10_000, help="rows per transaction")
    ] = 500,
    pause: Annotated[
        float,
        typer.Option(
            "--pause", min=0, help="seconds between batches, so the service's writes get in"
        ),
    ] = 0.05,
) -> None:
    """Make a new data key active and re-encrypt every encrypted value under it, in batches,
    while the service keeps running (reads keep working throughout)."""
    settings = settings_or_exit()
    if settings.master_key is None:
        raise fail(
            "encryption at rest is off: set GUESTCOMMS_MASTER_KEY "
            "(`guestcomms keys master-key` makes one)"
        )
    wait = settings.data_key_refresh_seconds + SETTLE_MARGIN_SECONDS if settle is None else settle

    async def main() -> RotationReport:
        engine = engine_for(settings)
        try:
            total = await rows_to_scan(engine)
            with Progress(
                TextColumn("re-encrypting {task.fields[table]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as bar:
                task = bar.add_task("rows", total=max(total, 1), table="")

                def advance(table: str, rows: int) -> None:
                    bar.update(task, advance=rows, table=table)

                report = await rotate_data_key(
                    engine,
                    settle_seconds=wait,
                    batch_size=batch_size,
                    pause_seconds=pause,
                    progress=advance,
                )
        finally:
            await engine.dispose()
        async with database_session(settings) as session:
            await record_cli(
                session,
                organization_id=None,
                action="keys.rotate-data-key",
                target=report.key_id,
                detail={"reencrypted": report.total, "passes": report.passes},
            )
        return report

    if wait:
        console.print(f"the new key is used by every process after {wait:g} s; then re-encrypting")
    report = run_async(main)
    table = Table(title=f"data key {report.key_id} is active")
    table.add_column("table")
    table.add_column("rows re-encrypted", justify="right")
    for name, count in sorted(report.reencrypted.items()):
        table.add_row(name, f"{count:,}")
    console.print(table)
    console.print(
        f"{report.total:,} row(s) re-encrypted in {report.passes} pass(es); older keys are "
        "retired (kept: they still decrypt backups)",
        highlight=False,
    )
