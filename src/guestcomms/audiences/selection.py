"""Selecting an audience's members: the interface campaigns and the preview use.

``compile_audience`` parses and checks the filter once (no I/O); ``count``, ``sample``,
``page`` and ``matching`` then run it in the caller's session, which owns the transaction.
``page`` streams any number of members in contact-id order with flat memory: call it in a
loop, passing the last ``contact_id`` of one page as ``after`` for the next.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Select, Table, func, null
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from guestcomms.audiences.query import members
from guestcomms.contacts.models import Contact
from guestcomms.db.encrypted import EncryptedText
from guestcomms.domain.audience import (
    And,
    Field,
    FieldKind,
    FilterError,
    Node,
    Not,
    Or,
    parse_filter,
)
from guestcomms.errors import FilterSyntaxError
from guestcomms.events.models import EventGuest
from guestcomms.security.protection import protection_of

ID_CHUNK = 1000  # ids per IN (...) list: far below every driver's bind-parameter limit


@dataclass(frozen=True, slots=True)
class AudienceSpec:
    """Who an audience is: a filter over an organization's contacts, or over one event's
    guests and vendors when ``event_id`` is set."""

    organization_id: uuid.UUID
    event_id: uuid.UUID | None
    filter: str  # "" = everyone (in the event, when event_id is set)
    dedupe_households: bool = False  # one member per household; no effect without an event


@dataclass(frozen=True, slots=True)
class Recipient:
    """One selected member, with what scheduling and rendering need about them."""

    contact_id: uuid.UUID
    timezone: str | None  # the contact's own IANA zone, if any
    locale: str | None
    household_id: uuid.UUID | None  # always None without an event


@dataclass(frozen=True, slots=True)
class CompiledAudience:
    """A spec whose filter parsed and type-checked; run it with the functions below."""

    spec: AudienceSpec
    condition: Node | None  # None: everyone


def compile_audience(spec: AudienceSpec) -> CompiledAudience:
    """Parse and check ``spec.filter``.

    Raises ``FilterSyntaxError`` (field ``filter``, with position, line and column) when the
    filter is malformed, ill-typed, or uses event-guest fields without an event.
    """
    try:
        condition = parse_filter(spec.filter, event=spec.event_id is not None)
    except FilterError as e:
        raise FilterSyntaxError(
            e.message, position=e.position, line=e.line, column=e.column, field="filter"
        ) from e
    return CompiledAudience(spec=spec, condition=condition)


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _key(spec: AudienceSpec) -> InstrumentedAttribute[uuid.UUID]:
    # the column ``members`` orders by: the event guest's contact id within an event
    return EventGuest.contact_id if spec.event_id is not None else Contact.id


def _fields(node: Node | None) -> Iterator[Field]:
    if isinstance(node, And | Or):
        for operand in node.operands:
            yield from _fields(operand)
    elif isinstance(node, Not):
        yield from _fields(node.operand)
    elif node is not None:
        yield node.field


def _refuse_encrypted_fields(audience: CompiledAudience) -> None:
    # a ciphertext cannot be compared in SQL (and a JSON path finds nothing in one): a
    # filter over an encrypted field would silently select no one, so it is refused
    contacts = cast(Table, Contact.__table__)
    for field in _fields(audience.condition):
        if field.kind is FieldKind.ATTRIBUTE or (
            field.kind is FieldKind.CONTACT
            and isinstance(contacts.c[field.name].type, EncryptedText)
        ):
            problem = FilterError(
                f"{field.label} is encrypted at rest, so a filter cannot read it",
                text=audience.spec.filter,
                position=field.position,
                hint="filter on tags, timezone, locale or the event guest's fields instead",
            )
            raise FilterSyntaxError(
                problem.message,
                position=problem.position,
                line=problem.line,
                column=problem.column,
                field="filter",
            )


def _members(
    session: AsyncSession,
    audience: CompiledAudience,
    *,
    columns: Sequence[Any],
    after: uuid.UUID | None = None,
    dedupe_households: bool | None = None,
) -> tuple[Select[Any], InstrumentedAttribute[uuid.UUID]]:
    """``members`` of the compiled audience on this session's dialect; the household rule is
    the audience's own unless ``dedupe_households`` says otherwise."""
    spec = audience.spec
    if protection_of(session).encrypting:
        _refuse_encrypted_fields(audience)
    return members(
        audience.condition,
        organization_id=spec.organization_id,
        event_id=spec.event_id,
        dedupe_households=(
            spec.dedupe_households if dedupe_households is None else dedupe_households
        ),
        dialect=_dialect(session),
        columns=columns,
        after=after,
    )


async def count(session: AsyncSession, audience: CompiledAudience) -> int:
    """How many members the audience has now (after household de-duplication)."""
    stmt, _ = _members(session, audience, columns=[func.count()])
    return int(await session.scalar(stmt) or 0)


async def sample(session: AsyncSession, audience: CompiledAudience, *, limit: int) -> list[Contact]:
    """The first ``limit`` members' contacts, in contact-id order (stable between calls)."""
    stmt, key = _members(session, audience, columns=[Contact])
    return list((await session.scalars(stmt.order_by(key).limit(limit))).all())


async def page(
    session: AsyncSession, audience: CompiledAudience, *, after: uuid.UUID | None, limit: int
) -> list[Recipient]:
    """Up to ``limit`` members with a contact id above ``after``, in contact-id order.

    Fewer than ``limit`` (possibly none) means the audience is exhausted. Each call is one
    index range scan from ``after``, so a loop over 50,000 members costs the same per page
    at the end as at the start; the household rule holds across pages because each page
    decides "first member of the household" over the whole event, not over the page.
    """
    spec = audience.spec
    household = EventGuest.household_id if spec.event_id is not None else null()
    stmt, key = _members(
        session,
        audience,
        columns=[_key(spec), Contact.timezone, Contact.locale, household],
        after=after,
    )
    rows = await session.execute(stmt.order_by(key).limit(limit))
    return [Recipient(contact_id=r[0], timezone=r[1], locale=r[2], household_id=r[3]) for r in rows]


async def matching(
    session: AsyncSession, audience: CompiledAudience, contact_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of ``contact_ids`` are in the audience now: contacts of the organization (guests
    of the event, with one) that match the filter.

    Household de-duplication is not applied: the caller chose one member per household when
    it selected them, and dropping that member because another one started matching since
    would leave the household with nobody.
    """
    spec = audience.spec
    wanted = list(dict.fromkeys(contact_ids))
    found: set[uuid.UUID] = set()
    for start in range(0, len(wanted), ID_CHUNK):
        stmt, key = _members(session, audience, columns=[_key(spec)], dedupe_households=False)
        found.update(await session.scalars(stmt.where(key.in_(wanted[start : start + ID_CHUNK]))))
    return found
