"""Audiences on SQLite and PostgreSQL: the SQL selection against an independent evaluation,
keyset pages and household de-duplication, the saved-audience API, and its errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import operator
import random
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guestcomms.audiences.selection import (
    AudienceSpec,
    compile_audience,
    count,
    matching,
    page,
    sample,
)
from guestcomms.contacts.models import Contact, ContactTag
from guestcomms.db.engine import create_engine, create_session_factory
from guestcomms.domain.ids import IdKind, from_public, new_id, to_public
from guestcomms.events.models import Event, EventGuest, Household
from guestcomms.organizations.models import Organization
from tests.support import create_contact, create_key, make_settings, running_app

T = TypeVar("T")
PROBLEM = "application/problem+json"

# ---------------------------------------------------------------------------------------------
# A population with every shape of value the language must handle: missing fields, JSON null,
# empty strings, lists and objects, numbers that are equal across int and float, booleans next
# to the numbers 0 and 1, strings that look like numbers, non-ASCII text and keys.

STRINGS = ["", "a", "A", "b", "ab", "é", "zeta", "x y", "1", "true", "bride", "vegan", "B"]
NUMBERS: list[int | float] = [0, 1, -1, 2, 1.0, 2.5, -2.25, 10, 100.5]
BOOLS = [True, False]
SCALARS: list[Any] = [*STRINGS, *NUMBERS, *BOOLS]
KEYS = ["a", "b", "Score", "é", 'q"b', "plus one", "missing"]  # "missing" is never set
TAGS = ["family", "vip", "kids", "band"]
RSVPS = ["pending", "yes", "no", "maybe"]
SIDES = [None, "", "bride", "groom"]
TABLES = [None, "1", "A", "B"]
DIETS = [None, "", "vegan", "none"]
LOCALES = [None, "", "en", "en-GB", "fr", "é"]
ZONES = [None, "Europe/London", "America/New_York"]
MISSING = object()


def _json_value(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(SCALARS)
    if roll < 0.7:
        return None
    if roll < 0.9:
        return [rng.choice(SCALARS) for _ in range(rng.randint(0, 3))]
    return rng.choice([{}, {"k": 1}])


def _attributes(rng: random.Random) -> dict[str, Any]:
    return {k: _json_value(rng) for k in KEYS[:-1] if rng.random() < 0.6}


@dataclass
class Member:
    """One contact as the independent evaluation sees it (the guest row, if in the event)."""

    contact: dict[str, Any]
    guest: dict[str, Any] | None = None


@dataclass
class Population:
    """What was inserted, in plain Python."""

    organization_id: uuid.UUID
    event_id: uuid.UUID
    households: list[uuid.UUID]
    members: list[Member]  # every contact of the organization
    other_ids: list[uuid.UUID] = field(default_factory=list)  # contacts of another organization


async def _insert_population(sessions: async_sessionmaker[AsyncSession]) -> Population:
    """Organization A with 90 contacts (70 guests of its event, some in 6 households, some
    guests of a second event only) and organization B with look-alikes that must never show."""
    rng = random.Random(20261122)
    now = datetime.now(UTC)
    orgs = [Organization(id=new_id(), name=f"Org {n} {uuid.uuid4().hex[:6]}") for n in "AB"]
    population: Population | None = None
    async with sessions() as session, session.begin():
        session.add_all(orgs)
        await session.flush()
        for org in orgs:
            events = [
                Event(
                    id=new_id(),
                    organization_id=org.id,
                    name=f"Wedding {n}",
                    date=date(2026, 6, 20),
                    timezone="Europe/Rome",
                    starts_at=now,
                )
                for n in range(2)
            ]
            session.add_all(events)
            await session.flush()
            households = [
                Household(id=new_id(), organization_id=org.id, event_id=events[0].id, name=f"H{n}")
                for n in range(6)
            ]
            session.add_all(households)
            await session.flush()
            members = await _insert_members(session, rng, org.id, events, households, now)
            if population is None:
                population = Population(org.id, events[0].id, [h.id for h in households], members)
            else:
                population.other_ids = [m.contact["id"] for m in members]
    assert population is not None
    return population


async def _insert_members(
    session: AsyncSession,
    rng: random.Random,
    organization_id: uuid.UUID,
    events: list[Event],
    households: list[Household],
    now: datetime,
) -> list[Member]:
    contacts, tags, guests, members = [], [], [], []
    for i in range(90):
        contact = {
            "id": new_id(),
            "organization_id": organization_id,
            "email": rng.choice([None, f"guest{i}@example.com", f"zoë{i}@example.org"]),
            "phone": rng.choice([None, "+447911123456"]),
            "first_name": rng.choice([None, *STRINGS]),
            "last_name": rng.choice([None, *STRINGS]),
            "timezone": rng.choice(ZONES),
            "locale": rng.choice(LOCALES),
            "attributes": _attributes(rng),
            "tags": sorted(rng.sample(TAGS, rng.randint(0, 3))),
            "push_subscriptions": [],
            "created_at": now,
            "updated_at": now,
        }
        contacts.append(contact)
        tags += [
            {
                "id": new_id(),
                "organization_id": organization_id,
                "contact_id": contact["id"],
                "tag": t,
            }
            for t in contact["tags"]
        ]
        member = Member(contact)
        if i < 80:  # 0-69 guests of the event, 70-79 of the other event only, 80-89 of none
            guest = {
                "id": new_id(),
                "organization_id": organization_id,
                "event_id": events[0].id if i < 70 else events[1].id,
                "contact_id": contact["id"],
                "role": rng.choice(["guest", "guest", "vendor"]),
                "household_id": rng.choice([None, *(h.id for h in households)]) if i < 70 else None,
                "rsvp": rng.choice(RSVPS),
                "side": rng.choice(SIDES),
                "table_name": rng.choice(TABLES),
                "dietary": rng.choice(DIETS),
                "attributes": _attributes(rng),
                "created_at": now,
                "updated_at": now,
            }
            guests.append(guest)
            if i < 70:
                member.guest = guest
        members.append(member)
    await session.execute(insert(Contact), contacts)
    await session.execute(insert(ContactTag), tags)
    await session.execute(insert(EventGuest), guests)
    return members


# ---------------------------------------------------------------------------------------------
# The test's own filter trees, printer and evaluator (independent of guestcomms.domain).
# A tree is a tuple: ("cmp", field, op, value), ("in", field, values, negated),
# ("has", field, value), ("exists", field, negated), ("not", tree), ("and"|"or", [trees]).
# A field is ("contact", name), ("tags",), ("guest", column), ("household",), ("attr", key)
# or ("gattr", key).

CONTACT_TEXT = ["email", "phone", "first_name", "last_name", "timezone", "locale"]
GUEST_TEXT = {"rsvp": "rsvp", "role": "role", "side": "side", "table": "table_name"}
GUEST_TEXT["dietary"] = "dietary"
ORDERS = ["<", "<=", ">", ">="]
KEYWORD_CASES = [str.lower, str.upper, str.title]


def _leaves(households: list[str], *, event: bool) -> st.SearchStrategy[Any]:
    text = st.sampled_from([*STRINGS, "guest3@example.com", "GUEST4@Example.com", "zz"])
    scalar = st.sampled_from(SCALARS)
    ordered = st.sampled_from([*STRINGS, *NUMBERS])
    contact_field = st.sampled_from(CONTACT_TEXT).map(lambda n: ("contact", n))
    attr_field = st.sampled_from(KEYS).map(lambda k: ("attr", k))
    options = [
        st.tuples(st.just("cmp"), contact_field, st.sampled_from(["=", "!=", *ORDERS]), text),
        st.tuples(st.just("in"), contact_field, st.lists(text, max_size=3), st.booleans()),
        st.tuples(st.just("exists"), contact_field, st.booleans()),
        st.tuples(st.just("has"), st.just(("tags",)), st.sampled_from([*TAGS, "nobody"])),
        st.tuples(st.just("exists"), st.just(("tags",)), st.booleans()),
        st.tuples(st.just("cmp"), attr_field, st.sampled_from(["=", "!="]), scalar),
        st.tuples(st.just("cmp"), attr_field, st.sampled_from(ORDERS), ordered),
        st.tuples(st.just("in"), attr_field, st.lists(scalar, max_size=3), st.booleans()),
        st.tuples(st.just("has"), attr_field, scalar),
        st.tuples(st.just("exists"), attr_field, st.booleans()),
    ]
    if event:
        gattr = st.sampled_from(KEYS).map(lambda k: ("gattr", k))
        guest = st.sampled_from(["side", "table", "dietary"]).map(lambda n: ("guest", n))
        rsvp = st.just(("guest", "rsvp"))
        household_ids = st.sampled_from([*households, to_public(IdKind.HOUSEHOLD, new_id())])
        options += [
            st.tuples(st.just("cmp"), rsvp, st.sampled_from(["=", "!="]), st.sampled_from(RSVPS)),
            st.tuples(st.just("in"), rsvp, st.lists(st.sampled_from(RSVPS)), st.booleans()),
            st.tuples(st.just("cmp"), st.just(("guest", "role")), st.just("="), st.just("vendor")),
            st.tuples(st.just("cmp"), guest, st.sampled_from(["=", "!=", *ORDERS]), text),
            st.tuples(st.just("exists"), guest, st.booleans()),
            st.tuples(st.just("cmp"), st.just(("household",)), st.just("="), household_ids),
            st.tuples(
                st.just("in"), st.just(("household",)), st.lists(household_ids), st.booleans()
            ),
            st.tuples(st.just("exists"), st.just(("household",)), st.booleans()),
            st.tuples(st.just("cmp"), gattr, st.sampled_from(["=", "!=", *ORDERS]), ordered),
            st.tuples(st.just("has"), gattr, scalar),
            st.tuples(st.just("exists"), gattr, st.booleans()),
        ]
    return st.one_of(*options)


def filters(households: list[str], *, event: bool) -> st.SearchStrategy[Any]:
    """Random filter trees of up to 8 conditions."""
    return st.recursive(
        _leaves(households, event=event),
        lambda children: st.one_of(
            st.tuples(st.just("not"), children),
            st.tuples(st.sampled_from(["and", "or"]), st.lists(children, min_size=2, max_size=3)),
        ),
        max_leaves=8,
    )


PRECEDENCE = {"or": 1, "and": 2, "not": 3}


def render(tree: Any, draw: Callable[[st.SearchStrategy[T]], T]) -> str:
    """The tree as filter text: minimal parentheses (so precedence is exercised), sometimes
    extra ones, keywords in mixed case, strings with or without \\u escapes."""
    kind = tree[0]
    word = draw(st.sampled_from(KEYWORD_CASES))
    if kind in ("and", "or"):
        parts = [_child(t, PRECEDENCE[kind] + 1, draw) for t in tree[1]]
        return f" {word(kind)} ".join(parts)
    if kind == "not":
        return f"{word('not')} {_child(tree[1], PRECEDENCE['not'], draw)}"
    name = _render_field(tree[1], draw)
    if kind == "cmp":
        return f"{name} {tree[2]} {_literal(tree[3], draw)}"
    if kind == "in":
        items = ", ".join(_literal(v, draw) for v in tree[2])
        return f"{name} {word('not in' if tree[3] else 'in')} [{items}]"
    if kind == "has":
        return f"{name} {word('has')} {_literal(tree[2], draw)}"
    return f"{name} {word('not exists' if tree[2] else 'exists')}"


def _child(tree: Any, at_least: int, draw: Callable[[st.SearchStrategy[T]], T]) -> str:
    text = render(tree, draw)
    needs = PRECEDENCE.get(tree[0], 4) < at_least
    return f"({text})" if needs or draw(st.integers(0, 9)) == 0 else text


def _render_field(spec: Any, draw: Callable[[st.SearchStrategy[T]], T]) -> str:
    kind = spec[0]
    if kind in ("contact", "guest"):
        return draw(st.sampled_from(KEYWORD_CASES))(spec[1])
    if kind in ("tags", "household"):
        return kind
    key = spec[1]
    plain = key.isidentifier() and key.isascii()
    written = key if plain and draw(st.booleans()) else json.dumps(key)
    if kind == "gattr":
        return f"guest.{written}"
    bare_ok = plain and key.lower() not in {*CONTACT_TEXT, *GUEST_TEXT, "tags", "household"}
    return key if bare_ok and draw(st.booleans()) else f"attributes.{written}"


def _literal(value: Any, draw: Callable[[st.SearchStrategy[T]], T]) -> str:
    if isinstance(value, bool):
        return draw(st.sampled_from(KEYWORD_CASES))(str(value).lower())
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=draw(st.booleans()))
    return repr(value)


def _value(member: Member, spec: Any) -> Any:
    """The field's value for the member, or MISSING (absent, null, or no guest row)."""
    kind = spec[0]
    if kind == "contact":
        value = member.contact[spec[1]]
    elif kind == "tags":
        value = member.contact["tags"]
    elif kind == "attr":
        value = member.contact["attributes"].get(spec[1])
    elif member.guest is None:
        return MISSING
    elif kind == "guest":
        value = member.guest[GUEST_TEXT[spec[1]]]
    elif kind == "household":
        household = member.guest["household_id"]
        value = to_public(IdKind.HOUSEHOLD, household) if household else None
    else:
        value = member.guest["attributes"].get(spec[1])
    return MISSING if value is None else value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(value: Any, op: str, literal: Any) -> bool:
    """The documented comparison: same type or false; numbers as doubles; strings by code
    point."""
    if op == "!=":
        return not _compare(value, "=", literal)
    if value is MISSING:
        return False
    ops = {"=": operator.eq, "<": operator.lt, "<=": operator.le, ">": operator.gt}
    ops[">="] = operator.ge
    if isinstance(literal, bool):
        return isinstance(value, bool) and value == literal
    if isinstance(literal, str):
        return isinstance(value, str) and bool(ops[op](value, literal))
    return _is_number(value) and bool(ops[op](float(value), float(literal)))


def evaluate(tree: Any, member: Member) -> bool:
    """The independent evaluation of the documented semantics."""
    kind = tree[0]
    if kind == "and":
        return all(evaluate(t, member) for t in tree[1])
    if kind == "or":
        return any(evaluate(t, member) for t in tree[1])
    if kind == "not":
        return not evaluate(tree[1], member)
    return _condition(tree, member)


def _condition(tree: Any, member: Member) -> bool:
    kind, spec = tree[0], tree[1]
    value = _value(member, spec)

    def norm(literal: Any) -> Any:  # emails are stored lower-cased; literals are lowered
        return literal.lower() if spec == ("contact", "email") else literal

    if kind == "cmp":
        return _compare(value, tree[2], norm(tree[3]))
    if kind == "in":
        found = any(_compare(value, "=", norm(v)) for v in tree[2])
        return found != tree[3]
    if kind == "has":
        return isinstance(value, list) and any(_compare(v, "=", tree[2]) for v in value)
    present = value is not MISSING and value not in ("", [], {})
    return present != tree[2]


def expected_members(
    population: Population, tree: Any, *, event: bool, dedupe: bool
) -> list[uuid.UUID]:
    """The contact ids the audience must select, in order."""
    candidates = [m for m in population.members if not event or m.guest is not None]
    chosen = sorted(
        (m for m in candidates if tree is None or evaluate(tree, m)),
        key=lambda m: m.contact["id"],
    )
    if event and dedupe:
        seen: set[uuid.UUID] = set()
        kept = []
        for m in chosen:
            household = m.guest["household_id"] if m.guest else None
            if household is None or household not in seen:
                kept.append(m)
            if household is not None:
                seen.add(household)
        chosen = kept
    return [m.contact["id"] for m in chosen]


# ---------------------------------------------------------------------------------------------


def _run_on(loop: asyncio.AbstractEventLoop) -> Callable[[Coroutine[Any, Any, T]], T]:
    """Run coroutines on the test's loop from hypothesis's (blocking) thread."""

    def run(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=60)

    return run


@dataclass
class Selected:
    """What the selection functions said about one audience."""

    ids: list[uuid.UUID]  # page by page
    households: list[uuid.UUID | None]
    timezones: list[str | None]
    total: int
    sample: list[uuid.UUID]


async def _select_all(
    sessions: async_sessionmaker[AsyncSession], spec: AudienceSpec, *, batch: int
) -> Selected:
    """Page through the audience as campaigns do; also count it and sample it."""
    audience = compile_audience(spec)
    async with sessions() as session:
        selected = Selected([], [], [], 0, [])
        after = None
        while True:
            rows = await page(session, audience, after=after, limit=batch)
            assert len(rows) <= batch
            selected.ids += [r.contact_id for r in rows]
            selected.households += [r.household_id for r in rows]
            selected.timezones += [r.timezone for r in rows]
            if len(rows) < batch:
                break
            after = rows[-1].contact_id
        selected.total = await count(session, audience)
        selected.sample = [c.id for c in await sample(session, audience, limit=5)]
        return selected


@contextlib.asynccontextmanager
async def _sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


async def test_sql_selection_matches_an_independent_evaluation(database_url: str) -> None:
    """For random filters (and random event scope, household rule and page size), the SQL
    selection pages out exactly the members the test's own evaluation picks, in order; count,
    sample and matching agree; the other organization's look-alikes never appear."""
    async with _sessions(database_url) as sessions:
        population = await _insert_population(sessions)
        households = [to_public(IdKind.HOUSEHOLD, h) for h in population.households]
        all_ids = [m.contact["id"] for m in population.members] + population.other_ids
        run = _run_on(asyncio.get_running_loop())
        checked: list[str] = []

        @settings(
            max_examples=120,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(data=st.data())
        def check(data: st.DataObject) -> None:
            event = data.draw(st.booleans(), label="event")
            tree = data.draw(filters(households, event=event), label="tree")
            text = render(tree, data.draw)
            dedupe = data.draw(st.booleans(), label="dedupe")
            batch = data.draw(st.sampled_from([3, 16, 1000]), label="batch")
            spec = AudienceSpec(
                organization_id=population.organization_id,
                event_id=population.event_id if event else None,
                filter=text,
                dedupe_households=dedupe,
            )
            want = expected_members(population, tree, event=event, dedupe=dedupe)
            got = run(_select_all(sessions, spec, batch=batch))
            assert got.ids == want, text
            assert got.total == len(want), text
            assert got.sample == want[:5], text
            undeduped = expected_members(population, tree, event=event, dedupe=False)
            matched = run(_matching(sessions, spec, all_ids))
            assert matched == set(undeduped), text
            checked.append(text)

        await asyncio.to_thread(check)
    assert len(checked) >= 100  # the property really ran, on varied filters
    assert len(set(checked)) > 90


async def _matching(
    sessions: async_sessionmaker[AsyncSession], spec: AudienceSpec, ids: list[uuid.UUID]
) -> set[uuid.UUID]:
    async with sessions() as session:
        return await matching(session, compile_audience(spec), ids)


async def test_empty_filter_selects_everyone_in_scope(database_url: str) -> None:
    """The empty filter is every contact of the organization, or every guest of the event,
    and never one of the other organization."""
    async with _sessions(database_url) as sessions:
        population = await _insert_population(sessions)
        for event, want in ((False, 90), (True, 70)):
            spec = AudienceSpec(
                population.organization_id, population.event_id if event else None, ""
            )
            got = await _select_all(sessions, spec, batch=1000)
            assert got.total == len(got.ids) == want
            assert not set(got.ids) & set(population.other_ids)


async def _household_scenario(
    sessions: async_sessionmaker[AsyncSession],
) -> tuple[AudienceSpec, list[uuid.UUID], list[uuid.UUID]]:
    """An event with two households whose members interleave (in contact-id order) with
    guests who have none: (a spec for the event, the 8 contact ids in order, the households).

    ====  =========  =====
    c0    H1         no
    c1    -          yes
    c2    H1         yes
    c3    H2         yes
    c4    H1         yes
    c5    -          yes
    c6    H2         yes
    c7    H2         no
    ====  =========  =====
    """
    now = datetime.now(UTC)
    ids = sorted(new_id() for _ in range(8))
    org = Organization(id=new_id(), name=f"Households {uuid.uuid4().hex[:6]}")
    event = Event(
        id=new_id(),
        organization_id=org.id,
        name="Wedding",
        date=date(2026, 6, 20),
        timezone="Europe/Rome",
        starts_at=now,
    )
    h1, h2 = (
        Household(id=new_id(), organization_id=org.id, event_id=event.id, name=n)
        for n in ("H1", "H2")
    )
    plan = [(h1, "no"), (None, "yes"), (h1, "yes"), (h2, "yes")]
    plan += [(h1, "yes"), (None, "yes"), (h2, "yes"), (h2, "no")]
    async with sessions() as session, session.begin():
        session.add(org)
        await session.flush()
        session.add(event)
        await session.flush()
        session.add_all([h1, h2])
        await session.flush()
        for n, (contact_id, (household, rsvp)) in enumerate(zip(ids, plan, strict=True)):
            session.add(
                Contact(
                    id=contact_id,
                    organization_id=org.id,
                    email=f"c{n}@example.com",
                    timezone=f"Zone/{n}",
                    attributes={},
                    tags=[],
                )
            )
            await session.flush()
            session.add(
                EventGuest(
                    organization_id=org.id,
                    event_id=event.id,
                    contact_id=contact_id,
                    household_id=household.id if household else None,
                    rsvp=rsvp,
                    attributes={},
                )
            )
    return AudienceSpec(org.id, event.id, "", dedupe_households=True), ids, [h1.id, h2.id]


async def test_household_dedupe_holds_across_page_boundaries(database_url: str) -> None:
    """Each household is represented once, by its lowest *matching* member, whatever the page
    size: with `rsvp = "yes"` H1's first member (who said no) hands the place to the next."""
    async with _sessions(database_url) as sessions:
        spec, c, (h1, h2) = await _household_scenario(sessions)
        everyone = [c[0], c[1], c[3], c[5]]
        said_yes = [c[1], c[2], c[3], c[5]]
        for batch in (1, 2, 3, 100):
            got = await _select_all(sessions, spec, batch=batch)
            assert got.ids == everyone, batch
            assert got.households == [h1, None, h2, None]
            assert got.timezones == ["Zone/0", "Zone/1", "Zone/3", "Zone/5"]
            yes = AudienceSpec(
                spec.organization_id, spec.event_id, 'rsvp = "yes"', dedupe_households=True
            )
            got = await _select_all(sessions, yes, batch=batch)
            assert got.ids == said_yes, batch
            assert got.total == 4
            assert got.sample == said_yes
        # without the rule every guest is selected; matching never applies it
        plain = AudienceSpec(spec.organization_id, spec.event_id, 'rsvp = "yes"')
        assert (await _select_all(sessions, plain, batch=3)).ids == c[1:7]
        async with sessions() as session:
            found = await matching(session, compile_audience(spec), [c[7], c[4], uuid.uuid4()])
        assert found == {c[7], c[4]}


async def test_dedupe_without_an_event_changes_nothing(database_url: str) -> None:
    """Households belong to events: without one every contact stands alone."""
    async with _sessions(database_url) as sessions:
        spec, c, _ = await _household_scenario(sessions)
        no_event = AudienceSpec(spec.organization_id, None, "", dedupe_households=True)
        got = await _select_all(sessions, no_event, batch=3)
        assert got.ids == c
        assert got.households == [None] * 8


# ---------------------------------------------------------------------------------------------
# The saved-audience API


@contextlib.asynccontextmanager
async def _client(database_url: str, org: str = "Acme") -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(database_url)
    async with running_app(settings) as api:
        key = await create_key(database_url, org)
        async with api.as_key(key) as client:
            yield client


async def test_malformed_filters_are_422_with_the_position(database_url: str) -> None:
    """Saving, previewing or patching a malformed filter is a 422 `filter-error` naming the
    field `filter`, with position, line and column; nothing is saved."""
    async with _client(database_url) as client:
        bad = 'rsvp = "yes"'  # an event-guest field without an event
        for method, path, body in (
            ("POST", "/v1/audiences", {"name": "x", "filter": 'tags has "a" and (x = ]'}),
            ("POST", "/v1/audiences/preview", {"filter": 'tags has "a" and (x = ]'}),
        ):
            response = await client.request(method, path, json=body)
            assert response.status_code == 422, response.text
            assert response.headers["content-type"].split(";")[0] == PROBLEM
            problem = response.json()
            assert problem["type"] == "/problems/filter-error"
            assert problem["field"] == "filter"
            assert (problem["position"], problem["line"], problem["column"]) == (22, 1, 23)
            assert problem["detail"] == 'unexpected "]" at line 1, column 23: expected a value'
        response = await client.post("/v1/audiences", json={"name": "x", "filter": bad})
        assert response.status_code == 422, response.text
        assert response.json()["position"] == 0
        assert "rsvp needs an event" in response.json()["detail"]
        assert (await client.get("/v1/audiences")).json()["items"] == []
        created = await client.post("/v1/audiences", json={"name": "ok", "filter": "a exists"})
        assert created.status_code == 201, created.text
        path = f"/v1/audiences/{created.json()['id']}"
        response = await client.patch(path, json={"filter": "a exists and\n  tags = 3"})
        assert response.status_code == 422, response.text
        assert (response.json()["line"], response.json()["column"]) == (2, 3)
        assert (await client.get(path)).json()["filter"] == "a exists"


async def test_saved_audiences_and_their_preview(database_url: str) -> None:
    """Create, read, list, patch, preview (count and a sample shown as the contacts API shows
    contacts), and delete a saved audience."""
    async with _client(database_url) as client:
        ana = await create_contact(
            client, email="ana@example.com", tags=["family"], attributes={"age": 31}
        )
        ben = await create_contact(
            client, email="ben@example.com", tags=["family"], attributes={"age": 12}
        )
        await create_contact(client, email="cy@example.com", tags=["work"])
        body = {"name": "Adult family", "filter": 'tags has "family" and age >= 18'}
        response = await client.post("/v1/audiences", json=body)
        assert response.status_code == 201, response.text
        audience = response.json()
        assert audience["id"].startswith("aud_")
        assert audience["filter"] == body["filter"]
        assert audience["event_id"] is None
        assert audience["dedupe_households"] is False
        path = f"/v1/audiences/{audience['id']}"
        assert (await client.get(path)).json() == audience
        assert [a["id"] for a in (await client.get("/v1/audiences")).json()["items"]] == [
            audience["id"]
        ]
        preview = (await client.get(f"{path}/preview")).json()
        assert preview["count"] == 1
        assert preview["sample"] == [(await client.get(f"/v1/contacts/{ana}")).json()]
        response = await client.patch(path, json={"filter": 'tags has "family"'})
        assert response.status_code == 200, response.text
        preview = (await client.get(f"{path}/preview", params={"sample": 1})).json()
        assert preview["count"] == 2
        assert [c["id"] for c in preview["sample"]] == [ana]
        unsaved = await client.post(
            "/v1/audiences/preview", json={"filter": "age < 18", "sample": 0}
        )
        assert unsaved.json() == {"count": 1, "sample": []}
        everyone = await client.post("/v1/audiences/preview", json={})
        assert everyone.json()["count"] == 3
        assert ben in [c["id"] for c in everyone.json()["sample"]]
        conflict = await client.post("/v1/audiences", json={**body, "filter": ""})
        assert conflict.status_code == 409, conflict.text
        assert (await client.delete(path)).status_code == 204
        assert (await client.get(path)).status_code == 404


async def _org_id(sessions: async_sessionmaker[AsyncSession], name: str) -> uuid.UUID:
    async with sessions() as session:
        org = await session.scalar(select(Organization).where(Organization.name == name))
        assert org is not None
        return org.id


async def _add_event(
    sessions: async_sessionmaker[AsyncSession],
    organization_id: uuid.UUID,
    rsvps: dict[str, str],
) -> str:
    """An event of the organization with the given contacts (public ids) as guests."""
    event = Event(
        id=new_id(),
        organization_id=organization_id,
        name="Wedding",
        date=date(2026, 6, 20),
        timezone="Europe/Rome",
        starts_at=datetime.now(UTC),
    )
    async with sessions() as session, session.begin():
        session.add(event)
        await session.flush()
        session.add_all(
            EventGuest(
                organization_id=organization_id,
                event_id=event.id,
                contact_id=from_public(IdKind.CONTACT, contact),
                rsvp=rsvp,
                attributes={},
            )
            for contact, rsvp in rsvps.items()
        )
    return to_public(IdKind.EVENT, event.id)


async def test_event_audiences_select_the_events_guests(database_url: str) -> None:
    """An event audience previews only that event's guests; removing the event from an
    audience whose filter reads rsvp is refused; an unknown event id, or one of another
    organization, is a 422 naming event_id."""
    async with _client(database_url) as client, _sessions(database_url) as sessions:
        ana = await create_contact(client, email="ana@example.com")
        ben = await create_contact(client, email="ben@example.com")
        await create_contact(client, email="cy@example.com")  # not invited
        event = await _add_event(sessions, await _org_id(sessions, "Acme"), {ana: "yes", ben: "no"})
        body = {"name": "Coming", "event_id": event, "filter": 'rsvp = "yes"'}
        response = await client.post("/v1/audiences", json=body)
        assert response.status_code == 201, response.text
        assert response.json()["event_id"] == event
        path = f"/v1/audiences/{response.json()['id']}"
        preview = (await client.get(f"{path}/preview")).json()
        assert (preview["count"], [c["id"] for c in preview["sample"]]) == (1, [ana])
        everyone = await client.post("/v1/audiences/preview", json={"event_id": event})
        assert everyone.json()["count"] == 2
        response = await client.patch(path, json={"event_id": None})
        assert response.status_code == 422, response.text
        assert (response.json()["field"], response.json()["position"]) == ("filter", 0)
        assert (await client.get(path)).json()["event_id"] == event
        foreign, _, _ = await _household_scenario(sessions)
        for event_id in (to_public(IdKind.EVENT, foreign.event_id), "ct_123", "evt_nope"):
            for url, body in (
                ("/v1/audiences", {"name": "y", "event_id": event_id}),
                ("/v1/audiences/preview", {"event_id": event_id}),
            ):
                response = await client.post(url, json=body)
                assert response.status_code == 422, response.text
                assert response.json()["field"] == "event_id"


async def test_audience_routes_need_their_scopes(database_url: str) -> None:
    """Writing needs audiences:write; previews show contacts, so they need contacts:read."""
    settings = make_settings(database_url)
    async with running_app(settings) as api:
        reader = await create_key(database_url, "Acme", scopes=("audiences:read",))
        both = await create_key(database_url, "Acme", scopes=("audiences:read", "contacts:read"))
        async with api.as_key(reader) as client:
            assert (await client.get("/v1/audiences")).status_code == 200
            response = await client.post("/v1/audiences", json={"name": "x"})
            assert response.status_code == 403, response.text
            assert (await client.post("/v1/audiences/preview", json={})).status_code == 403
        async with api.as_key(both) as client:
            response = await client.post("/v1/audiences/preview", json={})
            assert response.status_code == 200, response.text
            assert response.json() == {"count": 0, "sample": []}
