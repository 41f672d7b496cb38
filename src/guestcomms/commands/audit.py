"""``guestcomms audit verify``: recompute every audit chain and name the first entry that was
altered or removed."""

from __future__ import annotations

from typing import Annotated

import typer

from guestcomms.audit.chain import ChainProblem
from guestcomms.audit.repository import verify_chains
from guestcomms.commands.support import (
    console,
    database_session,
    err_console,
    organization_named,
    run_async,
    settings_or_exit,
)

audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)


@audit_app.command("verify")
def verify(
    org: Annotated[str | None, typer.Option("--org", help="only this organization's chain")] = None,
) -> None:
    """Check every entry's hash, its link to the one before and the sequence without gaps;
    exit 1 naming the first bad entry of each broken chain."""
    settings = settings_or_exit()

    async def main() -> tuple[int, list[ChainProblem]]:
        async with database_session(settings) as session:
            organization_id = None if org is None else (await organization_named(session, org)).id
            return await verify_chains(session, organization_id=organization_id)

    count, problems = run_async(main)
    if problems:
        for problem in problems:
            err_console.print(f"audit log FAILED: {problem.describe()}", highlight=False)
        raise typer.Exit(code=1)
    console.print(f"audit log OK: {count} entries verified", highlight=False)
