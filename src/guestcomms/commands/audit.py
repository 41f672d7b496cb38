"""``guestcomms audit verify``: recompute every audit chain and name the first entry that was
altered or removed."""

from __future__ import annotations

from typing import Annotated

import typer

from guestcomms.audit.chain import ChainProblem
from guestcomms.audit.repository import verify_chains
from guestcomms.commands.support import console, err_console, run_async, settings_or_exit
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.errors import NotFoundError
from guestcomms.organizations.repository import OrganizationRepository

audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)


@audit_app.command("verify")
def verify(
    org: Annotated[str | None, typer.Option("--org", help="only this organization's chain")] = None,
) -> None:
    """Check every entry's hash, its link to the one before and the sequence without gaps;
    exit 1 naming the first bad entry of each broken chain."""
    settings = settings_or_exit()

    async def main() -> tuple[int, list[ChainProblem]]:
        engine = create_engine(settings.database_url)
        try:
            async with create_session_factory(engine)() as session:
                organization_id = None
                if org is not None:
                    organization = await OrganizationRepository(session).by_name(org)
                    if organization is None:
                        raise NotFoundError(f"no organization named {org!r}")
                    organization_id = organization.id
                return await verify_chains(session, organization_id=organization_id)
        finally:
            await engine.dispose()

    count, problems = run_async(main)
    if problems:
        for problem in problems:
            err_console.print(f"audit log FAILED: {problem.describe()}", highlight=False)
        raise typer.Exit(code=1)
    console.print(f"audit log OK: {count} entries verified", highlight=False)
