"""``guestcomms keys master-key`` and ``guestcomms keys rotate-data-key``: the keys of the
encryption at rest of personal fields (docs/operations.md, "Encryption at rest")."""

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
from guestcomms.security.encryption import encode_key, new_key
from guestcomms.security.rotation import RotationReport, rotate_data_key, rows_to_scan

SETTLE_MARGIN_SECONDS = 2.0  # beyond the other processes' refresh interval


def master_key() -> None:
    """Print a new random master key (base64) for GUESTCOMMS_MASTER_KEY.

    Keep it outside the database (a secret manager); without it the encrypted fields cannot
    be read, and no one can recover them."""
    console.print(encode_key(new_key()), highlight=False, soft_wrap=True)


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
