"""Locale tags, the choice of a locale variant, and the Babel filters of the template sandbox."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import pytest

from guestcomms.templates.i18n import (
    babel_locale,
    candidates,
    choose_variant,
    normalize_tag,
)
from guestcomms.templates.sandbox import (
    TemplateRenderer,
    TemplateRenderError,
    build_context,
    validate_template,
)

NNBSP = "\u202f"  # narrow no-break space: French digit groups, English "3:30 PM"
NBSP = "\xa0"


def render(
    source: str, *, locale: str | None = None, render_locale: str | None = None, **variables: Any
) -> str:
    """Render ``source`` as the text part for a contact of ``locale``."""
    context = build_context(contact={"locale": locale}, variables=variables)
    return (
        TemplateRenderer()
        .render(
            key="t",
            subject="s",
            html=None,
            text=source,
            context=context,
            locale=babel_locale(render_locale) if render_locale else None,
        )
        .text
    )


@pytest.mark.parametrize(
    ("tag", "canonical"),
    [
        ("fr", "fr"),
        ("FR", "fr"),
        ("fr_ca", "fr-CA"),
        ("fr-CA", "fr-CA"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("es-419", "es-419"),
    ],
)
def test_locale_tags_are_normalised(tag: str, canonical: str) -> None:
    """Separators and case are made canonical, so fr_ca and fr-CA name the same variant."""
    assert normalize_tag(tag) == canonical


@pytest.mark.parametrize("tag", ["", "f", "french!", "fr--CA", "12"])
def test_malformed_locale_tags_are_refused(tag: str) -> None:
    """What is not a tag raises ValueError (a 422 at save time)."""
    with pytest.raises(ValueError, match="not a locale tag"):
        normalize_tag(tag)


def test_candidates_go_from_specific_to_language() -> None:
    """fr-CA tries fr-CA then fr; a free-text locale yields nothing rather than failing."""
    assert candidates("fr_CA") == ("fr-CA", "fr")
    assert candidates("zh-Hant-TW") == ("zh-Hant-TW", "zh-Hant", "zh")
    assert candidates("Français") == ()
    assert candidates(None) == ()


@pytest.mark.parametrize(
    ("contact", "default", "chosen"),
    [
        ("fr-CA", "en", "fr"),  # the language's variant when the region has none
        ("pt-BR", "en", "pt-BR"),  # the exact variant first
        ("pt-PT", "en", "pt"),
        ("de", "en", None),  # no German variant and no English one: the base
        ("de", "fr-BE", "fr"),  # the organization's default, with the same fallback
        (None, "pt-BR", "pt-BR"),
        ("not a tag", "fr", "fr"),
        (None, None, None),
    ],
)
def test_variant_falls_back_from_contact_to_organization_to_base(
    contact: str | None, default: str | None, chosen: str | None
) -> None:
    """contact's locale -> its language -> organization default (same) -> base."""
    variants = {"fr": {}, "pt": {}, "pt-BR": {}}
    assert choose_variant(variants, locale=contact, default_locale=default) == chosen


def test_no_variants_means_base() -> None:
    """A version without locales always renders its base content."""
    assert choose_variant({}, locale="fr", default_locale="fr") is None


def test_babel_locales_are_parsed_once_and_fall_back() -> None:
    """The same Locale object is reused; an unknown tag falls back to its language, then en."""
    assert babel_locale("fr-CA") is babel_locale("fr-CA")
    assert str(babel_locale("fr-CA")) == "fr_CA"
    assert str(babel_locale("fr-XX")) == "fr"
    assert str(babel_locale("xx")) == "en"
    assert str(babel_locale(None)) == "en"


def test_date_as_a_french_and_an_american_guest_see_it() -> None:
    """The same ISO date reads '1 juin 2026' in French and 'Jun 1, 2026' in American English."""
    source = "{{ day|format_date }}"
    assert render(source, locale="fr", day="2026-06-01") == "1 juin 2026"
    assert render(source, locale="en-US", day="2026-06-01") == "Jun 1, 2026"
    assert render(source, locale="de", day=date(2026, 6, 1)) == "01.06.2026"


def test_render_locale_wins_over_the_contact_field() -> None:
    """The locale the composer chose is used, not the raw field; locale= overrides both."""
    source = "{{ day|format_date('long') }}"
    assert render(source, locale="en", render_locale="fr", day="2026-06-01") == "1 juin 2026"
    explicit = "{{ day|format_date('long', locale='de') }}"
    assert render(explicit, locale="fr", day="2026-06-01") == "1. Juni 2026"


def test_date_filters_accept_objects_and_iso_strings() -> None:
    """Dates, datetimes and ISO strings (with or without a time) are all dates."""
    source = "{{ day|format_date('full') }}"
    assert render(source, locale="fr", day=datetime(2026, 6, 1, 18, 0)) == "lundi 1 juin 2026"
    assert render(source, locale="fr", day="2026-06-01T18:00:00+02:00") == "lundi 1 juin 2026"
    assert render("{{ d|format_date('d MMMM') }}", locale="fr", d="2026-06-01") == "1 juin"


def test_datetime_converts_to_the_zone_given() -> None:
    """tz= converts an instant (a naive one is UTC); without tz its own offset is kept."""
    at = "2026-06-01T13:30:00Z"
    converted = "{{ at|format_datetime(tz='Europe/Paris') }}"
    assert render(converted, locale="en-US", at=at) == f"Jun 1, 2026, 3:30:00{NNBSP}PM"
    assert render(converted, locale="fr", at=at) == "1 juin 2026, 15:30:00"
    naive = "{{ at|format_datetime('short', tz='America/New_York') }}"
    assert render(naive, locale="en-US", at="2026-06-01T13:30:00") == f"6/1/26, 9:30{NNBSP}AM"
    own = "{{ at|format_datetime('HH:mm') }}"
    assert render(own, locale="fr", at="2026-06-01T15:30:00+02:00") == "15:30"


def test_datetime_uses_the_contacts_time_zone_field() -> None:
    """tz=timezone is the contact's zone; with none set, the value's own offset is kept."""
    context = build_context(
        contact={"locale": "en-US", "timezone": "America/Chicago"},
        variables={"at": "2026-06-01T18:00:00Z"},
    )
    rendered = TemplateRenderer().render(
        key="t",
        subject="s",
        html=None,
        text="{{ at|format_time('short', tz=timezone) }}",
        context=context,
    )
    assert rendered.text == f"1:00{NNBSP}PM"
    no_zone = render("{{ at|format_time('short', tz=timezone) }}", at="2026-06-01T18:00:00Z")
    assert no_zone == f"6:00{NNBSP}PM"


def test_time_filter() -> None:
    """A time of day from a time object or an ISO time string."""
    assert render("{{ t|format_time('short') }}", locale="en-US", t=time(15, 30)) == (
        f"3:30{NNBSP}PM"
    )
    assert render("{{ t|format_time('short') }}", locale="fr-CA", t="15:30") == "15 h 30"


def test_numbers_in_the_guests_locale() -> None:
    """Separators, currency placement and percent signs follow the locale."""
    values: dict[str, Any] = {"n": "1234.5", "share": 0.25}
    assert render("{{ n|format_decimal }}", locale="en-US", **values) == "1,234.5"
    assert render("{{ n|format_decimal }}", locale="fr", **values) == f"1{NNBSP}234,5"
    assert render("{{ n|format_number }}", locale="de", **values) == "1.234,5"
    assert render("{{ n|format_currency('EUR') }}", locale="fr", **values) == (
        f"1{NNBSP}234,50{NBSP}€"
    )
    assert render("{{ n|format_currency('usd') }}", locale="en-US", **values) == "$1,234.50"
    assert render("{{ share|format_percent }}", locale="en-US", **values) == "25%"
    assert render("{{ share|format_percent }}", locale="fr", **values) == f"25{NBSP}%"
    assert render("{{ 3|format_number }}", locale="en") == "3"
    assert render("{{ n|format_decimal('#,##0.00') }}", locale="en", n=Decimal("2")) == "2.00"


@pytest.mark.parametrize(
    ("source", "value", "message"),
    [
        ("{{ v|format_date }}", "next Tuesday", "format_date: 'next Tuesday' is not a date"),
        ("{{ v|format_datetime }}", 42, "format_datetime: 42 is not a date and time"),
        ("{{ v|format_time }}", "noon", "format_time: 'noon' is not a time"),
        ("{{ v|format_number }}", "lots", "format_number: 'lots' is not a number"),
        ("{{ v|format_decimal }}", True, "format_decimal: True is not a number"),
        ("{{ v|format_percent }}", "NaN", "format_percent: 'NaN' is not a number"),
        ("{{ v|format_currency('XYZ') }}", 5, "unknown currency 'XYZ'"),
        ("{{ v|format_datetime(tz='Mars/Olympus') }}", "2026-06-01", "unknown time zone"),
    ],
)
def test_bad_values_are_render_errors(source: str, value: Any, message: str) -> None:
    """A value a filter cannot read fails the render with a message naming the filter."""
    with pytest.raises(TemplateRenderError) as caught:
        render(source, locale="fr", v=value)
    assert message in caught.value.message
    assert caught.value.field == "text"


def test_filters_pass_the_save_time_check() -> None:
    """Templates using the filters are accepted when saved, in html and text parts alike."""
    validate_template(
        subject="{{ day|format_date('long') }}",
        html="<p>{{ price|format_currency('EUR') }} {{ at|format_datetime(tz=timezone) }}</p>",
        text="{{ share|format_percent }} {{ n|format_number }} {{ n|format_decimal }}",
        variables=["day", "price", "at", "share", "n"],
    )


def test_html_output_is_still_escaped() -> None:
    """A filter's output goes through autoescaping like any other value."""
    context = build_context(contact={"locale": "en"}, variables={"d": "2026-06-01"})
    rendered = TemplateRenderer().render(
        key="h",
        subject="s",
        html="<p>{{ d|format_date(\"'<b>'d\") }}</p>",
        text=None,
        context=context,
    )
    assert rendered.html == "<p>&lt;b&gt;1</p>"


def test_a_missing_value_names_the_variable() -> None:
    """A filter given an undefined variable reports the variable, not a type mismatch."""
    with pytest.raises(TemplateRenderError, match="'day' is undefined"):
        render("{{ day|format_date }}", locale="fr")
    with pytest.raises(TemplateRenderError, match="'n' is undefined"):
        render("{{ n|format_currency('EUR') }}", locale="fr")
