"""The audience filter as SQL: a WHERE clause over contacts (and an event's guests).

Every dialect-specific expression of the filter language lives here, so the two databases'
differences are visible in one place:

- **JSON attributes.** SQLite reads them with ``json_type`` / ``json_extract`` on a quoted path
  (and ``json_each`` for lists, and for keys a path cannot spell: SQLite 3.40 matches path
  labels against the stored text, where ``json.dumps`` escaped non-ASCII keys). PostgreSQL
  (the column is ``json``, not ``jsonb``) reads them with ``->``, ``->>`` and ``json_typeof``.
  Each comparison first checks the JSON type, so numbers compare as numbers (both databases
  cast to a double), strings as strings, booleans as booleans, and a string ``"1"`` never
  equals the number 1. PostgreSQL evaluates ``AND`` in any order, so a cast that could fail
  on another type sits behind ``CASE``, whose order is guaranteed.
- **Text order.** PostgreSQL orders text by the database collation unless told otherwise;
  ``COLLATE "C"`` makes it byte order, which is what SQLite's ``BINARY`` does.
- **Two-valued logic.** SQL comparisons with NULL are unknown, and ``NOT unknown`` is unknown,
  which would drop rows ``!=`` must keep. Every condition is wrapped in ``coalesce(..., false)``
  so ``not`` is always plain negation (``EXISTS`` is two-valued already and stays bare so
  PostgreSQL can plan it as a semi-join).

The tables are passed in (:class:`Tables`) so the household de-duplication can apply the same
filter to a second, aliased pair of tables.
"""

from __future__ import annotations

import abc
import operator
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Float,
    String,
    Text,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by
from sqlalchemy.orm import InstrumentedAttribute, aliased
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from guestcomms.contacts.models import Contact, ContactTag
from guestcomms.domain.audience import (
    And,
    Compare,
    Exists,
    Field,
    FieldKind,
    Has,
    In,
    Node,
    Not,
    Op,
    Or,
    Scalar,
)
from guestcomms.domain.ids import IdKind, from_public
from guestcomms.events.models import EventGuest

Condition = ColumnElement[bool]

_ORDER: dict[Op, Callable[[Any, Any], Any]] = {
    Op.EQ: operator.eq,
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.GT: operator.gt,
    Op.GE: operator.ge,
}
# keys a quoted SQLite JSON path spells exactly (anything else is looked up with json_each)
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\- ]+")


@dataclass(frozen=True, slots=True)
class Tables:
    """What a filter reads: the contact entity, the event-guest entity (``None`` without an
    event), possibly aliased, the organization and the SQL dialect (``sqlite``/``postgresql``)."""

    contact: Any
    guest: Any
    organization_id: uuid.UUID
    dialect: str


def where(node: Node | None, tables: Tables) -> Condition:
    """The filter as a condition that is true or false (never NULL) for each row."""
    if node is None:
        return true()
    if isinstance(node, Not):
        return not_(where(node.operand, tables))
    if isinstance(node, And):
        return and_(*(where(n, tables) for n in node.operands))
    if isinstance(node, Or):
        return or_(*(where(n, tables) for n in node.operands))
    if node.field.kind is FieldKind.TAGS:
        return _tags(node, tables)
    return func.coalesce(_condition(node, tables), false())


def _tags(node: Compare | In | Has | Exists, tables: Tables) -> Condition:
    # contact_tags mirrors contacts.tags and is indexed by (organization, tag, contact)
    found = select(ContactTag.id).where(
        ContactTag.organization_id == tables.organization_id,
        ContactTag.contact_id == tables.contact.id,
    )
    if isinstance(node, Has):
        found = found.where(ContactTag.tag == node.value)
    return exists(found)  # the parser allows only has and exists on tags


def _condition(node: Compare | In | Has | Exists, tables: Tables) -> Condition:
    field = node.field
    if field.kind in (FieldKind.ATTRIBUTE, FieldKind.GUEST_ATTRIBUTE):
        owner = tables.contact if field.kind is FieldKind.ATTRIBUTE else tables.guest
        value: _JsonValue = (
            _PostgresJson(owner.attributes, field.name)
            if tables.dialect == "postgresql"
            else _SqliteJson(owner.attributes, field.name)
        )
        return _json_condition(node, value)
    column = _column(field, tables)
    if isinstance(node, Exists):
        return column.is_not(None) if field.kind is FieldKind.HOUSEHOLD else column != ""
    if isinstance(node, In):
        if not node.values:
            return false()
        return column.in_([_column_value(field, v) for v in node.values])
    assert isinstance(node, Compare)  # noqa: S101 - the parser allows has on lists only
    if node.op is not Op.EQ and tables.dialect == "postgresql":
        column = column.collate("C")  # byte order, as SQLite's BINARY
    return _ORDER[node.op](column, _column_value(field, node.value))  # type: ignore[no-any-return]


def _column(field: Field, tables: Tables) -> ColumnElement[Any]:
    if field.kind is FieldKind.CONTACT:
        column: ColumnElement[Any] = getattr(tables.contact, field.name)
        return column
    if tables.guest is None:  # compile_audience refuses these without an event
        raise ValueError(f"{field.label} needs an event")
    name = "household_id" if field.kind is FieldKind.HOUSEHOLD else field.name
    guest_column: ColumnElement[Any] = getattr(tables.guest, name)
    return guest_column


def _column_value(field: Field, value: Scalar) -> Any:
    if field.kind is FieldKind.HOUSEHOLD:
        return from_public(IdKind.HOUSEHOLD, str(value))  # checked by the parser
    return value


def _json_condition(node: Compare | In | Has | Exists, value: _JsonValue) -> Condition:
    if isinstance(node, Exists):
        return value.exists()
    if isinstance(node, Has):
        return value.has(node.value)
    if isinstance(node, In):
        return or_(false(), *(value.compare(Op.EQ, v) for v in node.values))
    return value.compare(node.op, node.value)


class _JsonValue(abc.ABC):
    """One key of a JSON object column, compared the way the language defines."""

    @abc.abstractmethod
    def compare(self, op: Op, literal_value: Scalar) -> Condition:
        """``value op literal`` when the JSON type matches the literal's, else false."""

    @abc.abstractmethod
    def has(self, element: Scalar) -> Condition:
        """The value is a list with an element ``= element``."""

    @abc.abstractmethod
    def exists(self) -> Condition:
        """Present, and not null, ``""``, ``[]`` nor ``{}``."""


def _number(value: Scalar) -> Any:
    return literal(float(value), Float)


class _SqliteJson(_JsonValue):
    """JSON1 functions; types are null, true, false, integer, real, text, array, object."""

    def __init__(self, column: Any, key: str) -> None:
        if _PLAIN_KEY.fullmatch(key):
            path = literal(f'$."{key}"', String)
            self.type: Any = func.json_type(column, path)
            self.value: Any = func.json_extract(column, path)
            self.document, self.path = column, path
        else:
            entry = func.json_each(column).table_valued("key", "value", "type")
            match = entry.c.key == literal(key, String)
            self.type = select(entry.c.type).where(match).scalar_subquery()
            self.value = select(entry.c.value).where(match).scalar_subquery()
            self.document, self.path = self.value, literal("$", String)

    def compare(self, op: Op, literal_value: Scalar) -> Condition:
        compare = _ORDER[op]
        if isinstance(literal_value, bool):
            return self.type == ("true" if literal_value else "false")  # type: ignore[no-any-return]
        if isinstance(literal_value, str):
            return and_(self.type == "text", compare(self.value, literal(literal_value, String)))
        return case(
            (
                self.type.in_(("integer", "real")),
                compare(cast(self.value, Float), _number(literal_value)),
            ),
            else_=false(),
        )

    def has(self, element: Scalar) -> Condition:
        item = func.json_each(self.document, self.path).table_valued("value", "type")
        if isinstance(element, bool):
            matches: Any = item.c.type == ("true" if element else "false")
        elif isinstance(element, str):
            matches = and_(item.c.type == "text", item.c.value == literal(element, String))
        else:
            matches = and_(
                item.c.type.in_(("integer", "real")),
                cast(item.c.value, Float) == _number(element),
            )
        # CASE, not AND: json_each on a string that is not JSON text fails, and only CASE
        # promises the look-up runs for arrays alone
        return case(
            (self.type == "array", exists(select(item.c.type).where(matches))), else_=false()
        )

    def exists(self) -> Condition:
        return case(
            (or_(self.type.is_(None), self.type == "null"), false()),
            (self.type == "text", self.value != ""),
            (self.type == "array", func.json_array_length(self.document, self.path) > 0),
            (self.type == "object", func.json(self.value) != "{}"),
            else_=true(),
        )


class _PostgresJson(_JsonValue):
    """``json`` operators; ``json_typeof`` says string, number, boolean, null, array, object."""

    def __init__(self, column: Any, key: str) -> None:
        self.node: Any = column.op("->", return_type=JSON)(literal(key, Text))
        self.text: Any = column.op("->>", return_type=Text)(literal(key, Text))
        self.type: Any = func.json_typeof(self.node)

    def compare(self, op: Op, literal_value: Scalar) -> Condition:
        compare = _ORDER[op]
        if isinstance(literal_value, bool):
            return and_(self.type == "boolean", self.text == ("true" if literal_value else "false"))
        if isinstance(literal_value, str):
            text = self.text if op is Op.EQ else self.text.collate("C")
            return and_(self.type == "string", compare(text, literal(literal_value, Text)))
        return case(
            (self.type == "number", compare(cast(self.text, Float), _number(literal_value))),
            else_=false(),
        )

    def has(self, element: Scalar) -> Condition:
        item = func.json_array_elements(self.node).table_valued("value")
        item_type = func.json_typeof(item.c.value)
        # the text of a JSON scalar: the value at the empty path
        item_text = item.c.value.op("#>>", return_type=Text)(literal_column("'{}'"))
        if isinstance(element, bool):
            matches: Any = and_(item_type == "boolean", item_text == str(element).lower())
        elif isinstance(element, str):
            matches = and_(item_type == "string", item_text == literal(element, Text))
        else:
            matches = case(
                (item_type == "number", cast(item_text, Float) == _number(element)),
                else_=false(),
            )
        # json_array_elements fails on anything but an array, so CASE guards it
        return case((self.type == "array", exists(select(item_type).where(matches))), else_=false())

    def exists(self) -> Condition:
        return case(
            (or_(self.type.is_(None), self.type == "null"), false()),
            (self.type == "string", self.text != ""),
            (self.type == "array", func.json_array_length(self.node) > 0),
            (self.type == "object", cast(self.node, JSONB) != cast(literal_column("'{}'"), JSONB)),
            else_=true(),
        )


def members(
    node: Node | None,
    *,
    organization_id: uuid.UUID,
    event_id: uuid.UUID | None,
    dedupe_households: bool,
    dialect: str,
    columns: Sequence[Any],
    after: uuid.UUID | None = None,
) -> tuple[Select[Any], InstrumentedAttribute[uuid.UUID]]:
    """``SELECT columns`` of the audience's members (after ``after``), and the key to order by.

    Without an event the rows are the organization's contacts, keyed by ``contacts.id``. With
    one they are that event's guests joined to their contacts, keyed by
    ``event_guests.contact_id``, so the scan follows the index on (organization, event,
    contact). ``dedupe_households`` keeps one member per household: the matching member with
    the lowest contact id (guests without a household always stay).
    """
    guest = EventGuest if event_id is not None else None
    tables = Tables(Contact, guest, organization_id, dialect)
    stmt = select(*columns)
    key: InstrumentedAttribute[uuid.UUID]
    if event_id is None:
        key = Contact.id
        stmt = stmt.select_from(Contact).where(Contact.organization_id == organization_id)
    else:
        key = EventGuest.contact_id
        stmt = (
            stmt.select_from(EventGuest)
            .join(Contact, Contact.id == EventGuest.contact_id)
            .where(
                EventGuest.organization_id == organization_id,
                EventGuest.event_id == event_id,
                Contact.organization_id == organization_id,
            )
        )
    stmt = stmt.where(where(node, tables))
    if after is not None:
        stmt = stmt.where(key > after)
    if dedupe_households and event_id is not None:
        firsts = _household_firsts(node, tables, event_id=event_id, after=after)
        stmt = stmt.where(or_(EventGuest.household_id.is_(None), key.in_(firsts)))
    return stmt, key


def _household_firsts(
    node: Node | None, tables: Tables, *, event_id: uuid.UUID, after: uuid.UUID | None
) -> Select[Any]:
    """The lowest matching contact id of each household of the event (computed once per
    statement, not per row: there is no index on ``household_id`` to make a per-row look-up
    cheap)."""
    contact, guest = aliased(Contact), aliased(EventGuest)
    inner = Tables(contact, guest, tables.organization_id, tables.dialect)
    first: ColumnElement[Any]
    if tables.dialect == "postgresql":  # PostgreSQL has no min(uuid)
        first = func.array_agg(aggregate_order_by(guest.contact_id, guest.contact_id))[1]
    else:
        first = func.min(guest.contact_id)
    stmt = (
        select(first)
        .select_from(guest)
        .join(contact, contact.id == guest.contact_id)
        .where(
            guest.organization_id == tables.organization_id,
            guest.event_id == event_id,
            guest.household_id.is_not(None),
            contact.organization_id == tables.organization_id,
            where(node, inner),
        )
        .group_by(guest.household_id)
    )
    # a household whose first member is before the page cannot put anyone on it
    return stmt.having(first > after) if after is not None else stmt
