"""The audience filter language: text in, a small typed syntax tree out; never ``eval``.

    rsvp = "pending" and tags has "family" and not (country in ["US", "CA"])

Grammar (LALR; keywords are case-insensitive and reserved; ``not`` binds tighter than
``and``, which binds tighter than ``or``)::

    filter     := or_expr | (nothing: everyone)
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" or_expr ")" | condition
    condition  := field ("=" | "!=" | "<" | "<=" | ">" | ">=") value
                | field ["not"] "in" "[" [value ("," value)*] "]"
                | field "has" value
                | field ["not"] "exists"
    field      := NAME | ("attributes" | "guest") "." (NAME | STRING)
    value      := STRING | NUMBER | "true" | "false"

Fields: the contact's ``email``, ``phone``, ``first_name``, ``last_name``, ``timezone``,
``locale`` (text) and ``tags`` (a list); the event guest's ``rsvp``, ``role``, ``side``,
``table``, ``dietary`` (text) and ``household`` (a ``hh_`` id), which need an event;
``attributes.NAME`` (or a bare NAME that is no field nor keyword) for a contact attribute and
``guest.NAME`` for an attribute of the event guest. Field names match case-insensitively like
keywords; attribute names are exact (``attributes."Plus one"`` quotes any other name, and
names that are keywords: ``attributes."in"``).

Semantics (two-valued: every condition is true or false for every contact, never unknown):

- A field is *missing* when it is absent or null. Any comparison on a missing field is false.
- ``=`` is true when the value has the literal's type and equals it. Strings compare exactly
  (case-sensitive), except ``email``, which is stored lower-cased: its literal is lower-cased.
  Numbers compare as IEEE doubles (``1 = 1.0``). A string is never equal to a number
  (``"1" != 1``), nor a boolean to a number.
- ``<``, ``<=``, ``>``, ``>=`` compare numbers with numbers and strings with strings (by
  Unicode code point, i.e. byte order of UTF-8); across types they are false. Ordering by a
  boolean literal, or a household, is refused.
- ``in [a, b]`` is ``= a or = b``; ``in []`` is false.
- ``has v`` is true when the value is a list holding an element that ``= v``.
- ``exists`` is true when the field is present and not null, ``""``, ``[]`` nor ``{}``.
- ``!=``, ``not in`` and ``not exists`` are exactly ``not (=)``, ``not (in)``, ``not (exists)``:
  so ``side != "bride"`` holds for a guest without a side.

Mistakes the types reveal are refused before anything runs (``tags = "x"``: use ``has``;
``first_name = 3``; ``has`` on a text field; ``<`` with ``true`` or a list). Every error is a
:class:`FilterError` with the 0-based offset, line and column where the problem starts
(``audiences.selection.compile_audience`` raises it as ``errors.FilterSyntaxError``, a 422:
this module stays free of the error tree outside the domain).

Pure: lark and the standard library, nothing of ours outside ``guestcomms.domain``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from enum import StrEnum
from typing import Any

from lark import Lark, Token, Transformer, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from guestcomms.domain.enums import GuestRole, Rsvp
from guestcomms.domain.ids import IdKind, InvalidIdError, from_public

MAX_FILTER_BYTES = 4096  # UTF-8 bytes of filter text
MAX_DEPTH = 32  # nested not/and/or; keeps every walk of the tree far from the recursion limit
MAX_ATTRIBUTE_NAME_CHARS = 100
MAX_NUMBER = 2**53  # the largest magnitude at which every integer is an exact double


class FilterError(ValueError):
    """A filter is malformed or ill-typed; ``message`` says what and where.

    ``position`` is the 0-based character offset where the problem starts; ``line`` and
    ``column`` (1-based) say the same for people.
    """

    def __init__(self, problem: str, *, text: str, position: int, hint: str = "") -> None:
        self.position = max(0, min(position, len(text)))
        self.line = text.count("\n", 0, self.position) + 1
        self.column = self.position - (text.rfind("\n", 0, self.position) + 1) + 1
        self.message = f"{problem} at line {self.line}, column {self.column}"
        if hint:
            self.message += f": {hint}"
        super().__init__(self.message)


class FieldKind(StrEnum):
    """Where a field's value lives."""

    CONTACT = "contact"  # a text column of the contact
    TAGS = "tags"  # the contact's list of tags
    GUEST = "guest"  # a text column of the event guest
    HOUSEHOLD = "household"  # the event guest's household (compared by hh_ id)
    ATTRIBUTE = "attribute"  # one key of the contact's attributes (any JSON value)
    GUEST_ATTRIBUTE = "guest_attribute"  # one key of the event guest's attributes


class Op(StrEnum):
    """A comparison; ``!=`` is not one: it parses as ``not (=)``."""

    EQ = "="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


Scalar = str | int | float | bool

# contact text columns and event-guest text columns, by their name in the language
CONTACT_FIELDS = ("email", "phone", "first_name", "last_name", "timezone", "locale")
GUEST_COLUMNS = {
    "rsvp": "rsvp",
    "role": "role",
    "side": "side",
    "table": "table_name",
    "dietary": "dietary",
}
# the values a column can hold: a literal outside them is a typo that would match nobody
_ALLOWED_VALUES: dict[str, tuple[str, ...]] = {
    "rsvp": tuple(r.value for r in Rsvp),
    "role": tuple(r.value for r in GuestRole),
}
KEYWORDS = frozenset({"and", "or", "not", "in", "has", "exists", "true", "false"})


@dataclass(frozen=True, slots=True)
class Field:
    """A field: ``name`` is the column (``table_name`` for ``table``) or the attribute key."""

    kind: FieldKind
    name: str
    position: int = dataclass_field(default=0, compare=False)

    @property
    def needs_event(self) -> bool:
        """Whether the field belongs to an event guest."""
        return self.kind in (FieldKind.GUEST, FieldKind.HOUSEHOLD, FieldKind.GUEST_ATTRIBUTE)

    @property
    def label(self) -> str:
        """The field as the language spells it."""
        if self.kind is FieldKind.ATTRIBUTE:
            return f"attributes.{self.name}"
        if self.kind is FieldKind.GUEST_ATTRIBUTE:
            return f"guest.{self.name}"
        return "table" if self.name == "table_name" else self.name


@dataclass(frozen=True, slots=True)
class Compare:
    """``field op value``."""

    field: Field
    op: Op
    value: Scalar
    position: int = dataclass_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class In:
    """``field in [values]``: equal to any of them."""

    field: Field
    values: tuple[Scalar, ...]
    position: int = dataclass_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Has:
    """``field has value``: the field is a list with an element equal to ``value``."""

    field: Field
    value: Scalar
    position: int = dataclass_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Exists:
    """``field exists``: present and not null, ``""``, ``[]`` nor ``{}``."""

    field: Field
    position: int = dataclass_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Not:
    """``not operand``."""

    operand: Node
    position: int = dataclass_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class And:
    """All operands hold."""

    operands: tuple[Node, ...]
    position: int = dataclass_field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Or:
    """At least one operand holds."""

    operands: tuple[Node, ...]
    position: int = dataclass_field(default=0, compare=False)


Node = Compare | In | Has | Exists | Not | And | Or

_GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: not_expr (_AND not_expr)*
?not_expr: NOT not_expr -> negation
         | "(" or_expr ")"
         | condition
?condition: field OP value      -> compare
          | field IN list       -> member
          | field NOT IN list   -> not_member
          | field HAS value     -> has
          | field EXISTS        -> exists
          | field NOT EXISTS    -> not_exists
field: NAME ("." (NAME | STRING))?
list: LSQB [value ("," value)*] "]"
?value: STRING | NUMBER | TRUE | FALSE | list
OP: "=" | "!=" | "<=" | ">=" | "<" | ">"
_OR: /or\b/i
_AND: /and\b/i
NOT: /not\b/i
IN: /in\b/i
HAS: /has\b/i
EXISTS: /exists\b/i
TRUE: /true\b/i
FALSE: /false\b/i
NAME: /(?!(?:and|or|not|in|has|exists|true|false)\b)[a-z_][a-z0-9_]*/i
STRING: /"([^"\\]|\\.)*"/
NUMBER: /-?[0-9]+(\.[0-9]+)?/
LSQB: "["
%import common.WS
%ignore WS
"""


@dataclass(frozen=True, slots=True)
class _Literal:
    """A value as written, with where it starts (for error positions)."""

    value: Scalar | tuple[_Literal, ...]
    position: int


class _Problem(Exception):  # noqa: N818 - internal: becomes a FilterError once the text is known
    """Raised by the builder; ``parse_filter`` adds the text and raises a FilterError."""

    def __init__(self, problem: str, position: int, hint: str = "") -> None:
        super().__init__(problem)
        self.problem, self.position, self.hint = problem, position, hint


def _start(token: Token) -> int:
    return token.start_pos or 0


class _Build(Transformer[Token, Any]):
    """Turns each rule into a node as the LALR parser reduces it: no parse tree is built and
    nothing recurses, so deep nesting cannot exhaust the stack before the depth check."""

    # values

    def STRING(self, token: Token) -> _Literal:  # noqa: N802 - lark calls terminals by name
        try:
            value = json.loads(token.value)  # JSON string escapes: \" \\ \n \t \uXXXX ...
        except json.JSONDecodeError as e:
            bad = token.value[e.pos : e.pos + 2]
            raise _Problem(f"invalid escape {json.dumps(bad)}", _start(token) + e.pos) from e
        return _Literal(value, _start(token))

    def NUMBER(self, token: Token) -> _Literal:  # noqa: N802
        number: int | float = float(token) if "." in token else int(token)
        if abs(number) > MAX_NUMBER:  # beyond it doubles are no longer exact integers
            raise _Problem("number out of range", _start(token), f"at most {MAX_NUMBER}")
        return _Literal(number, _start(token))

    def TRUE(self, token: Token) -> _Literal:  # noqa: N802
        return _Literal(True, _start(token))

    def FALSE(self, token: Token) -> _Literal:  # noqa: N802
        return _Literal(False, _start(token))

    def LSQB(self, token: Token) -> int:  # noqa: N802
        return _start(token)

    def list(self, items: Sequence[Any]) -> _Literal:
        start, *values = items
        return _Literal(tuple(v for v in values if v is not None), start)  # "[]" gives [None]

    # fields

    def field(self, parts: Sequence[Any]) -> Field:
        head: Token = parts[0]
        if len(parts) == 1:
            return _bare_field(str(head), _start(head))
        prefix, key = str(head).lower(), parts[1]
        name = key.value if isinstance(key, _Literal) else str(key)
        if prefix not in ("attributes", "guest"):
            raise _Problem(
                f"unknown field {head}.{name}", _start(head), "use attributes.NAME or guest.NAME"
            )
        if not isinstance(name, str) or not _attribute_name_ok(name):
            raise _Problem(
                "invalid attribute name",
                _start(head),
                f"1 to {MAX_ATTRIBUTE_NAME_CHARS} characters",
            )
        kind = FieldKind.ATTRIBUTE if prefix == "attributes" else FieldKind.GUEST_ATTRIBUTE
        return Field(kind, name, _start(head))

    # conditions

    def compare(self, children: Sequence[Any]) -> Node:
        field, op, value = children
        _not_tags(field, value)
        if isinstance(value.value, tuple):
            raise _Problem(f"{op} takes one value", value.position, "use in [...] for a list")
        if op in ("=", "!="):
            node: Node = Compare(field, Op.EQ, _scalar(field, value, exact=True), field.position)
            return Not(node, field.position) if op == "!=" else node
        scalar = _scalar(field, value, exact=False)
        if isinstance(scalar, bool) or field.kind is FieldKind.HOUSEHOLD:
            what = "booleans" if isinstance(scalar, bool) else "households"
            raise _Problem(f"{op} cannot order {what}", value.position, "it orders numbers or text")
        return Compare(field, Op(op), scalar, field.position)

    def member(self, children: Sequence[Any]) -> In:
        field, _, values = children
        _not_tags(field, values)
        return In(field, tuple(_scalar(field, v, exact=True) for v in values.value), field.position)

    def not_member(self, children: Sequence[Any]) -> Not:
        field, _, keyword, values = children
        return Not(self.member((field, keyword, values)), field.position)

    def has(self, children: Sequence[Any]) -> Has:
        field, _, value = children
        if field.kind not in (FieldKind.TAGS, FieldKind.ATTRIBUTE, FieldKind.GUEST_ATTRIBUTE):
            raise _Problem(
                f"{field.label} is not a list", field.position, "has needs tags or an attribute"
            )
        if isinstance(value.value, tuple):
            raise _Problem("has takes one value", value.position)
        return Has(field, _scalar(field, value, exact=True), field.position)

    def exists(self, children: Sequence[Any]) -> Exists:
        return Exists(children[0], children[0].position)

    def not_exists(self, children: Sequence[Any]) -> Not:
        return Not(Exists(children[0], children[0].position), children[0].position)

    # logic

    def negation(self, children: Sequence[Any]) -> Not:
        keyword, operand = children
        return Not(operand, _start(keyword))

    def and_expr(self, children: Sequence[Node]) -> And:
        return And(tuple(children), children[0].position)

    def or_expr(self, children: Sequence[Node]) -> Or:
        return Or(tuple(children), children[0].position)


def _not_tags(field: Field, value: _Literal) -> None:
    if field.kind is FieldKind.TAGS:
        first = value.value[0] if isinstance(value.value, tuple) and value.value else value
        example = first.value if isinstance(first.value, str) else "x"
        raise _Problem("tags is a list", field.position, f"use tags has {json.dumps(example)}")


def _bare_field(name: str, position: int) -> Field:
    lowered = name.lower()
    if lowered in CONTACT_FIELDS:
        return Field(FieldKind.CONTACT, lowered, position)
    if lowered == "tags":
        return Field(FieldKind.TAGS, lowered, position)
    if lowered in GUEST_COLUMNS:
        return Field(FieldKind.GUEST, GUEST_COLUMNS[lowered], position)
    if lowered == "household":
        return Field(FieldKind.HOUSEHOLD, lowered, position)
    if lowered in ("attributes", "guest"):
        raise _Problem(f"{name} needs a name", position, f"write {lowered}.NAME")
    return Field(FieldKind.ATTRIBUTE, name, position)


def _attribute_name_ok(name: str) -> bool:
    return 0 < len(name) <= MAX_ATTRIBUTE_NAME_CHARS


def _type_name(value: Scalar) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "string" if isinstance(value, str) else "number"


def _scalar(field: Field, literal: _Literal, *, exact: bool) -> Scalar:
    """The literal's value if it suits ``field`` (email lower-cased), else a _Problem.

    ``exact`` (for ``=`` and ``in``) also refuses values a column never holds (``rsvp``).
    """
    value = literal.value
    if isinstance(value, tuple):
        raise _Problem("a list cannot hold a list", literal.position)
    if field.kind is FieldKind.TAGS and not isinstance(value, str):
        raise _Problem(f"tags are text, not a {_type_name(value)}", literal.position)
    if field.kind not in (FieldKind.CONTACT, FieldKind.GUEST, FieldKind.HOUSEHOLD):
        return value
    if not isinstance(value, str):
        raise _Problem(
            f"{field.label} is text, not a {_type_name(value)}",
            literal.position,
            f'quote it: "{str(value).lower()}"',
        )
    if field.kind is FieldKind.HOUSEHOLD:
        try:
            from_public(IdKind.HOUSEHOLD, value)
        except InvalidIdError as e:
            raise _Problem("household takes a hh_ id", literal.position) from e
    allowed = _ALLOWED_VALUES.get(field.name)
    if exact and allowed and value not in allowed:
        raise _Problem(
            f"{field.label} is never {json.dumps(value)}",
            literal.position,
            f"it is one of {', '.join(allowed)}",
        )
    # stored lower-cased, so a literal Ana@ must find ana@
    return value.lower() if field.name == "email" else value


@functools.cache
def _parser() -> Lark:
    # built on first use rather than at import: compiling the grammar takes a few milliseconds
    return Lark(_GRAMMAR, parser="lalr", transformer=_Build(), maybe_placeholders=True)


def _expected(accepts: set[str]) -> str:
    """``expected ...``: the terminals the parser would have accepted, in words."""
    phrases: list[str] = []
    if "LPAR" in accepts:
        phrases.append("a condition")
    elif "NAME" in accepts and "OP" not in accepts:
        phrases.append("an attribute name")
    if "NUMBER" in accepts:
        phrases.append("a value")
    if "OP" in accepts:
        phrases.append("an operator (=, !=, <, <=, >, >=, in, not in, has, exists)")
    if "LSQB" in accepts and "NUMBER" not in accepts:
        phrases.append('"["')
    if "COMMA" in accepts:
        phrases.append('","')
    if "RSQB" in accepts:
        phrases.append('"]"')
    if "_AND" in accepts:
        phrases.append('"and", "or"')
    if "RPAR" in accepts:
        phrases.append('")"')
    if "$END" in accepts:
        phrases.append("the end of the filter")
    if not phrases:
        return ""
    if len(phrases) == 1:
        return f"expected {phrases[0]}"
    return f"expected {', '.join(phrases[:-1])} or {phrases[-1]}"


def _syntax_error(error: UnexpectedInput, text: str) -> FilterError:
    """A FilterError for lark's complaint, worded for people."""
    if isinstance(error, UnexpectedCharacters):
        position = error.pos_in_stream or 0
        if text[position] == '"':
            return FilterError("unterminated string", text=text, position=position)
        return FilterError(
            f"unexpected character {json.dumps(text[position])}",
            text=text,
            position=position,
            hint=_expected(set(error.allowed or ())),
        )
    assert isinstance(error, UnexpectedToken)  # noqa: S101 - the LALR parser raises no other
    parser = error.interactive_parser
    accepts: set[str] = set(parser.accepts()) if parser else set()  # type: ignore[no-untyped-call]
    hint = _expected(accepts or set(error.expected))
    if error.token.type == "$END":
        return FilterError("unexpected end of filter", text=text, position=len(text), hint=hint)
    if str(error.token).lower() in KEYWORDS and "NAME" in accepts:
        # keywords are reserved, so an attribute named like one must be quoted
        hint += f'; an attribute named {error.token} is written attributes."{error.token}"'
    return FilterError(
        f"unexpected {json.dumps(str(error.token))}",
        text=text,
        position=_start(error.token),
        hint=hint,
    )


def parse_filter(text: str, *, event: bool) -> Node | None:
    """The syntax tree of ``text``, or ``None`` for an empty filter (everyone).

    ``event`` says whether the audience ranges over an event's guests: without one, event-guest
    fields are refused. Raises :class:`FilterError` (with the position) for text that is too
    long, malformed, nested too deeply or ill-typed.
    """
    if len(text.encode()) > MAX_FILTER_BYTES:
        cut = len(text.encode()[:MAX_FILTER_BYTES].decode(errors="ignore"))
        raise FilterError(
            "filter too long", text=text, position=cut, hint=f"at most {MAX_FILTER_BYTES} bytes"
        )
    if not text.strip():
        return None
    try:
        node: Node = _parser().parse(text)  # type: ignore[assignment] # _Build returns nodes
    except UnexpectedInput as e:
        raise _syntax_error(e, text) from e
    except _Problem as e:
        raise FilterError(e.problem, text=text, position=e.position, hint=e.hint) from e
    _check_depth(node, text)
    if not event:
        for leaf in conditions(node):
            if leaf.field.needs_event:
                raise FilterError(
                    f"{leaf.field.label} needs an event",
                    text=text,
                    position=leaf.field.position,
                    hint="set event_id to filter an event's guests",
                )
    return node


def _check_depth(node: Node, text: str) -> None:
    stack: list[tuple[Node, int]] = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise FilterError(
                "filter nested too deeply",
                text=text,
                position=current.position,
                hint=f"at most {MAX_DEPTH} levels of not, and, or",
            )
        for child in _children(current):
            stack.append((child, depth + 1))


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Not):
        return (node.operand,)
    if isinstance(node, And | Or):
        return node.operands
    return ()


def conditions(node: Node) -> Iterator[Compare | In | Has | Exists]:
    """Every condition (leaf) of ``node``, left to right."""
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Compare | In | Has | Exists):
            yield current
        else:
            stack.extend(reversed(_children(current)))
