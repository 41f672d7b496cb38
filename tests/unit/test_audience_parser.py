"""The audience filter language: syntax trees, precedence, keywords, types, limits, errors."""

from __future__ import annotations

import uuid

import pytest

from guestcomms.audiences.selection import AudienceSpec, compile_audience
from guestcomms.domain.audience import (
    MAX_DEPTH,
    MAX_FILTER_BYTES,
    And,
    Compare,
    Exists,
    Field,
    FieldKind,
    FilterError,
    Has,
    In,
    Not,
    Op,
    Or,
    parse_filter,
)
from guestcomms.errors import FilterSyntaxError, ValidationFailedError

RSVP = Field(FieldKind.GUEST, "rsvp")
TAGS = Field(FieldKind.TAGS, "tags")


def attr(name: str) -> Field:
    return Field(FieldKind.ATTRIBUTE, name)


def parse(text: str, *, event: bool = True) -> object:
    return parse_filter(text, event=event)


def error(text: str, *, event: bool = True) -> FilterError:
    with pytest.raises(FilterError) as caught:
        parse_filter(text, event=event)
    return caught.value


def test_the_issue_example_parses_to_the_expected_tree() -> None:
    """The example from the issue: and of three, the last a negated membership."""
    tree = parse('rsvp = "pending" and tags has "family" and not (country in ["US","CA"])')
    assert tree == And(
        (
            Compare(RSVP, Op.EQ, "pending"),
            Has(TAGS, "family"),
            Not(In(attr("country"), ("US", "CA"))),
        )
    )


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_an_empty_filter_is_everyone(text: str) -> None:
    """Nothing (or only whitespace) selects everyone: no tree."""
    assert parse(text) is None


def test_not_binds_tighter_than_and_which_binds_tighter_than_or() -> None:
    """`not a and b or c` is `((not a) and b) or c`."""
    tree = parse("not a exists and b exists or c exists")
    a, b, c = (Exists(attr(n)) for n in "abc")
    assert tree == Or((And((Not(a), b)), c))


def test_parentheses_override_precedence() -> None:
    """`a and (b or c)` keeps the or inside."""
    a, b, c = (Exists(attr(n)) for n in "abc")
    assert parse("a exists and (b exists or c exists)") == And((a, Or((b, c))))
    assert parse("((a exists))") == a


def test_keywords_and_field_names_are_case_insensitive_attribute_names_are_not() -> None:
    """AND/Not/IN/Has/EXISTS/True work in any case; `Email` is the email field; attribute
    names keep their case."""
    tree = parse('Email IN ["a@x.io"] AnD NOT Tags HAS "vip" OR x = TRUE Or RSVP exists')
    assert tree == Or(
        (
            And(
                (
                    In(Field(FieldKind.CONTACT, "email"), ("a@x.io",)),
                    Not(Has(TAGS, "vip")),
                )
            ),
            Compare(attr("x"), Op.EQ, True),
            Exists(RSVP),
        )
    )
    assert parse("Country = 1") == Compare(attr("Country"), Op.EQ, 1)


def test_negative_forms_are_the_negation_of_the_positive_ones() -> None:
    """`!=`, `not in` and `not exists` parse as `not (=)`, `not (in)`, `not (exists)`."""
    assert parse("a != 1") == Not(Compare(attr("a"), Op.EQ, 1))
    assert parse("a not in [1, 2]") == Not(In(attr("a"), (1, 2)))
    assert parse("a NOT exists") == Not(Exists(attr("a")))
    assert parse("a in []") == In(attr("a"), ())


def test_fields_resolve_to_their_kind() -> None:
    """Contact fields, guest fields (table is table_name), attributes and guest attributes."""
    household = "hh_" + uuid.UUID(int=7).hex
    assert parse(f'table = "A" and household = "{household}" and guest.meal = "fish"') == And(
        (
            Compare(Field(FieldKind.GUEST, "table_name"), Op.EQ, "A"),
            Compare(Field(FieldKind.HOUSEHOLD, "household"), Op.EQ, household),
            Compare(Field(FieldKind.GUEST_ATTRIBUTE, "meal"), Op.EQ, "fish"),
        )
    )
    assert parse('attributes."Plus one" exists') == Exists(attr("Plus one"))
    assert parse('attributes."in" = 1') == Compare(attr("in"), Op.EQ, 1)  # keywords are quoted
    assert parse("attributes.email = 1") == Compare(attr("email"), Op.EQ, 1)


def test_literals_decode_json_escapes_and_numbers() -> None:
    """Strings use JSON escapes; integers stay integers, decimals are floats."""
    assert parse(r'a = "x\"y\\z\n\u00e9"') == Compare(attr("a"), Op.EQ, 'x"y\\z\né')
    assert parse("a >= -2.5") == Compare(attr("a"), Op.GE, -2.5)
    tree = parse("a in [3, false]")
    assert isinstance(tree, In)
    assert tree.values == (3, False)
    assert type(tree.values[0]) is int


def test_email_literals_are_lower_cased() -> None:
    """Emails are stored lower-cased, so the literal is too."""
    assert parse('email = "Ana@Example.COM"') == Compare(
        Field(FieldKind.CONTACT, "email"), Op.EQ, "ana@example.com"
    )


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        (
            'rsvp = "yes" and country in ["US", "CA",]',
            40,
            'unexpected "]" at line 1, column 41: expected a value',
        ),
        ("a = ", 4, "unexpected end of filter at line 1, column 5: expected a value"),
        ("(a = 1", 6, 'unexpected end of filter at line 1, column 7: expected ")"'),
        (
            "a = 1 b = 2",
            6,
            'unexpected "b" at line 1, column 7: expected "and", "or" or the end of the filter',
        ),
        ("a == 1", 3, 'unexpected "=" at line 1, column 4: expected a value'),
        ('a = "open', 4, "unterminated string at line 1, column 5"),
        (r'a = "bad \q"', 9, r'invalid escape "\\q" at line 1, column 10'),
        (
            "a = 1 and\n  b = @",
            16,
            'unexpected character "@" at line 2, column 7: expected a value',
        ),
        ("a", 1, "unexpected end of filter at line 1, column 2: expected an operator"),
        ("a in 3", 5, 'unexpected "3" at line 1, column 6: expected "["'),
        ("and a = 1", 0, 'unexpected "and" at line 1, column 1: expected a condition'),
        ("foo.bar = 1", 0, "unknown field foo.bar at line 1, column 1"),
        ("in = 1", 0, 'unexpected "in" at line 1, column 1: expected a condition; an attribute'),
        ("attributes.has = 1", 11, 'unexpected "has" at line 1, column 12: expected an attribute'),
        ("a = truex", 4, 'unexpected "truex" at line 1, column 5: expected a value'),
        ("attributes = 1", 0, "attributes needs a name at line 1, column 1"),
    ],
)
def test_syntax_errors_point_at_the_position(text: str, position: int, message: str) -> None:
    """Each error names what was wrong, and where (0-based offset; 1-based line and column)."""
    caught = error(text)
    assert caught.position == position
    assert caught.message.startswith(message), caught.message


def test_line_and_column_count_lines() -> None:
    """Line and column follow newlines; the offset counts characters from the start."""
    caught = error("a = 1\nand b = 2\nand c = ]")
    assert (caught.position, caught.line, caught.column) == (24, 3, 9)


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ('tags = "family"', 0, 'tags is a list at line 1, column 1: use tags has "family"'),
        ('tags in ["a"]', 0, "tags is a list"),
        ("tags has 3", 9, "tags are text, not a number"),
        ("first_name = 3", 13, "first_name is text, not a number"),
        ("side has 'x'", 9, 'unexpected character "\'"'),
        ('side has "x"', 0, "side is not a list at line 1, column 1: has needs tags or an"),
        ("a < true", 4, "< cannot order booleans"),
        ("a < [1, 2]", 4, "< takes one value at line 1, column 5: use in [...] for a list"),
        ("a = [1]", 4, "= takes one value"),
        ('a has ["x"]', 6, "has takes one value"),
        ("a in [[1]]", 6, "a list cannot hold a list"),
        ('rsvp = "Yes"', 7, 'rsvp is never "Yes" at line 1, column 8: it is one of pending'),
        ('role in ["guest", "band"]', 18, 'role is never "band"'),
        ('household = "smiths"', 12, "household takes a hh_ id"),
        ('household < "hh_x"', 12, "household takes a hh_ id"),
        ("a = 9007199254740993", 4, "number out of range"),
    ],
)
def test_type_errors_point_at_the_position(text: str, position: int, message: str) -> None:
    """Mistakes the field types reveal are refused before anything runs."""
    caught = error(text)
    assert caught.position == position
    assert caught.message.startswith(message), caught.message


def test_rsvp_ordering_is_not_held_to_the_rsvp_values() -> None:
    """Only = and in are checked against the values a column holds."""
    assert parse('rsvp > "m"') == Compare(RSVP, Op.GT, "m")


@pytest.mark.parametrize(
    "text", ['rsvp = "yes"', "guest.meal exists", 'a = 1 or (b = 2 and side != "x")']
)
def test_event_guest_fields_need_an_event(text: str) -> None:
    """Without an event, rsvp, side, guest.NAME... are refused at the field's position."""
    assert parse(text, event=True) is not None
    caught = error(text, event=False)
    assert "needs an event" in caught.message
    assert text[caught.position :].startswith(("rsvp", "guest.", "side"))


def test_filters_longer_than_the_limit_are_refused() -> None:
    """4 KiB of UTF-8 at most: the position is where the limit falls."""
    just_fits = "a = " + '"' + "x" * (MAX_FILTER_BYTES - 6) + '"'
    assert len(just_fits.encode()) == MAX_FILTER_BYTES
    assert parse(just_fits) is not None
    too_long = "a = " + '"' + "é" * MAX_FILTER_BYTES + '"'
    caught = error(too_long)
    assert "filter too long" in caught.message
    assert len(too_long[: caught.position].encode()) <= MAX_FILTER_BYTES


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    """`not` and alternating and/or count as levels; redundant parentheses do not."""
    assert parse("not " * (MAX_DEPTH - 1) + "a exists") is not None
    caught = error("not " * (MAX_DEPTH + 5) + "a exists")
    assert "nested too deeply" in caught.message
    assert caught.position == 4 * MAX_DEPTH
    assert parse("(" * 500 + "a exists" + ")" * 500) == Exists(attr("a"))
    nested = "a exists"
    for _ in range(MAX_DEPTH):
        nested = f"(b exists or (c exists and {nested}))"
    assert "nested too deeply" in error(nested).message


def test_compile_audience_raises_a_422_naming_the_filter() -> None:
    """The selection interface turns a FilterError into FilterSyntaxError (a 422) on field
    `filter`, keeping position, line and column."""
    spec = AudienceSpec(organization_id=uuid.uuid4(), event_id=None, filter='rsvp = "yes"')
    with pytest.raises(FilterSyntaxError) as caught:
        compile_audience(spec)
    assert isinstance(caught.value, ValidationFailedError)
    assert caught.value.status == 422
    assert caught.value.field == "filter"
    assert (caught.value.position, caught.value.line, caught.value.column) == (0, 1, 1)
    assert "needs an event" in caught.value.message
    assert compile_audience(
        AudienceSpec(organization_id=uuid.uuid4(), event_id=uuid.uuid4(), filter='rsvp = "yes"')
    ).condition == Compare(RSVP, Op.EQ, "yes")
