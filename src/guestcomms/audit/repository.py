"""Every audit query: appending to a chain under its head's lock, and reading chains back.

``append_entry`` is synchronous because it runs inside the session's ``before_commit`` hook
(SQLAlchemy's asyncio extension runs event hooks in its greenlet, where the synchronous
session may execute SQL); async callers use ``record`` with ``run_sync``.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from guestcomms.audit.chain import ChainProblem, EntryFields, chain_of, entry_hash, verify_chain
from guestcomms.audit.models import AuditEntry, AuditHead
from guestcomms.domain.clock import utc_now
from guestcomms.domain.ids import new_id

VERIFY_BATCH_ROWS = 1000  # entries read per round trip while verifying


def _lock_head(session: Session, chain: str) -> tuple[int, str]:
    """Lock the chain's head row (creating it on first use) and return its ``seq``, ``hash``.

    On PostgreSQL ``FOR UPDATE`` makes a second appender wait until the first commits; two
    first appends race on the insert, which ``ON CONFLICT DO NOTHING`` settles. SQLite
    renders no ``FOR UPDATE``: its ``BEGIN IMMEDIATE`` already serialises every writer.
    """
    query = select(AuditHead.seq, AuditHead.hash).where(AuditHead.chain == chain).with_for_update()
    row = session.execute(query).one_or_none()
    if row is None:
        module = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        session.execute(
            module.insert(AuditHead)
            .values(id=new_id(), created_at=utc_now(), chain=chain, seq=0, hash="")
            .on_conflict_do_nothing()
        )
        row = session.execute(query).one()
    return int(row.seq), str(row.hash)


def append_entry(
    session: Session,
    *,
    organization_id: uuid.UUID | None,
    actor: str,
    action: str,
    target: str | None,
    detail: dict[str, Any],
    source: str,
) -> EntryFields:
    """Append one entry to the organization's chain (or the system chain) in the session's
    current transaction, and move the head. Returns what was written."""
    chain = chain_of(organization_id)
    seq, prev_hash = _lock_head(session, chain)
    fields = EntryFields(
        id=new_id(),
        chain=chain,
        organization_id=organization_id,
        seq=seq + 1,
        actor=actor[:100],
        action=action[:200],
        target=target[:200] if target else None,
        detail=detail,
        source=source[:100],
        created_at=utc_now(),
        prev_hash=prev_hash,
    )
    digest = entry_hash(fields)
    session.execute(
        insert(AuditEntry).values(
            id=fields.id,
            chain=chain,
            organization_id=organization_id,
            seq=fields.seq,
            actor=fields.actor,
            action=fields.action,
            target=fields.target,
            detail=detail,
            source=fields.source,
            created_at=fields.created_at,
            prev_hash=prev_hash,
            hash=digest,
        )
    )
    session.execute(
        update(AuditHead).where(AuditHead.chain == chain).values(seq=fields.seq, hash=digest)
    )
    return fields


async def record(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID | None,
    actor: str,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    source: str,
) -> None:
    """``append_entry`` from async code, in the session's open transaction."""

    def _append(sync_session: Session) -> None:
        append_entry(
            sync_session,
            organization_id=organization_id,
            actor=actor,
            action=action,
            target=target,
            detail=detail or {},
            source=source,
        )

    await session.run_sync(_append)


def _fields(row: AuditEntry) -> EntryFields:
    return EntryFields(
        id=row.id,
        chain=row.chain,
        organization_id=row.organization_id,
        seq=row.seq,
        actor=row.actor,
        action=row.action,
        target=row.target,
        detail=row.detail,
        source=row.source,
        created_at=row.created_at,
        prev_hash=row.prev_hash,
    )


async def entries_page(
    session: AsyncSession, *, organization_id: uuid.UUID, after: int, limit: int
) -> list[AuditEntry]:
    """Up to ``limit`` of the organization's entries with ``seq`` above ``after``, in order."""
    rows = await session.scalars(
        select(AuditEntry)
        .where(AuditEntry.chain == chain_of(organization_id), AuditEntry.seq > after)
        .order_by(AuditEntry.seq)
        .limit(limit)
    )
    return list(rows.all())


async def _entries(session: AsyncSession, chain: str) -> list[tuple[EntryFields, str]]:
    rows: list[tuple[EntryFields, str]] = []
    last = 0
    while True:
        batch = (
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.chain == chain, AuditEntry.seq > last)
                .order_by(AuditEntry.seq)
                .limit(VERIFY_BATCH_ROWS)
            )
        ).all()
        rows.extend((_fields(row), row.hash) for row in batch)
        if len(batch) < VERIFY_BATCH_ROWS:
            return rows
        last = batch[-1].seq
        session.expunge_all()  # keep memory flat on long chains


async def verify_chains(
    session: AsyncSession, *, organization_id: uuid.UUID | None = None
) -> tuple[int, list[ChainProblem]]:
    """Check every chain (or only the organization's): how many entries were checked, and the
    first problem of each broken chain."""
    heads = {
        str(chain): int(seq)
        for chain, seq in (await session.execute(select(AuditHead.chain, AuditHead.seq))).all()
    }
    chains = set(heads) | set((await session.scalars(select(AuditEntry.chain).distinct())).all())
    if organization_id is not None:
        chains = {chain_of(organization_id)}
    total, problems = 0, []
    for chain in sorted(chains):
        count, problem = verify_chain(
            chain, iter(await _entries(session, chain)), head_seq=heads.get(chain)
        )
        total += count
        if problem is not None:
            problems.append(problem)
    return total, problems
