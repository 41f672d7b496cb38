"""Locales for templates: tags, the choice of a version's locale variant, and Babel filters.

* ``normalize_tag`` and ``candidates`` read BCP 47 style tags (``fr-CA``, ``fr_ca``,
  ``zh-Hant-TW``); ``choose_variant`` picks the variant of a version for a contact: the
  contact's locale, then its language (``fr-CA`` -> ``fr``), then the organization's
  default locale the same way, then ``None`` (the base content).
* The filters (``format_date``, ``format_datetime``, ``format_time``, ``format_number``,
  ``format_decimal``, ``format_currency``, ``format_percent``) format with Babel in the
  render's locale: the Babel ``Locale`` stored under ``RENDER_LOCALE`` in the context (the
  composer puts the contact's locale there, else the organization's), else the contact's
  ``locale`` field, else English. Values may be ``date``/``datetime``/``time`` objects,
  numbers, or ISO 8601 and decimal strings, since message variables arrive as JSON. A value
  the filter cannot read raises ``ValueError``, which the renderer reports as a
  ``TemplateRenderError`` naming the part.

Babel ``Locale`` objects and time zones are parsed once per process (``functools.cache`` on
a bounded set of keys), so a filter call costs the formatting only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel import dates as babel_dates
from babel import numbers as babel_numbers
from jinja2 import Undefined, pass_context
from jinja2.runtime import Context

__all__ = [
    "DEFAULT_LOCALE",
    "FILTERS",
    "RENDER_LOCALE",
    "babel_locale",
    "candidates",
    "choose_variant",
    "normalize_tag",
]

DEFAULT_LOCALE = "en"
# The context key holding the render's Babel Locale. It starts with an underscore, so a
# template cannot read it: save-time checks refuse names that are not declared.
RENDER_LOCALE = "_render_locale"
LOCALE_CACHE_ENTRIES = 512  # distinct locale tags (and time zones) parsed per process

_TAG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")
_SEPARATOR = re.compile(r"[-_]")
T = TypeVar("T")
# a time of day or a whole timestamp (spelled out, as mypy joins the two types to object)
_TIME_PARSERS: tuple[Callable[[str], time | datetime], ...] = (
    time.fromisoformat,
    datetime.fromisoformat,
)


def normalize_tag(tag: str) -> str:
    """The canonical form of a locale tag (``fr_ca`` -> ``fr-CA``, ``zh-hant-tw`` ->
    ``zh-Hant-TW``); ``ValueError`` if it is not one."""
    if not _TAG.match(tag):
        raise ValueError(f"{tag!r} is not a locale tag such as 'fr' or 'fr-CA'")
    language, *rest = _SEPARATOR.split(tag)
    parts = [language.lower()]
    for part in rest:
        if len(part) == 4 and part.isalpha():
            parts.append(part.title())  # script: Hant
        elif (len(part) == 2 and part.isalpha()) or (len(part) == 3 and part.isdigit()):
            parts.append(part.upper())  # region: CA, 419
        else:
            parts.append(part.lower())  # variant
    return "-".join(parts)


@lru_cache(maxsize=LOCALE_CACHE_ENTRIES)
def candidates(tag: str | None) -> tuple[str, ...]:
    """The tags to try for ``tag``, most specific first: ``fr-CA`` -> ``("fr-CA", "fr")``.
    Empty for ``None`` or a malformed tag (a contact's free-text locale never fails a send)."""
    if not tag:
        return ()
    try:
        canonical = normalize_tag(tag)
    except ValueError:
        return ()
    parts = canonical.split("-")
    return tuple("-".join(parts[:end]) for end in range(len(parts), 0, -1))


def choose_variant(
    variants: Mapping[str, Any], *, locale: str | None, default_locale: str | None
) -> str | None:
    """The key of the variant to render for a contact of ``locale`` in an organization whose
    default is ``default_locale``, or ``None`` for the base content."""
    if not variants:
        return None
    for tag in (locale, default_locale):
        for candidate in candidates(tag):
            if candidate in variants:
                return candidate
    return None


@lru_cache(maxsize=LOCALE_CACHE_ENTRIES)
def babel_locale(tag: str | None) -> Locale:
    """The Babel ``Locale`` for ``tag``: the tag itself, else its language, else English."""
    for candidate in (*candidates(tag), DEFAULT_LOCALE):
        try:
            return Locale.parse(candidate, sep="-")
        except (UnknownLocaleError, ValueError):
            continue
    raise AssertionError("the default locale is always known")  # pragma: no cover


@lru_cache(maxsize=LOCALE_CACHE_ENTRIES)
def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown time zone {name!r}") from e


def _locale(context: Context, override: str | None) -> Locale:
    if override is not None:
        return babel_locale(override)
    found = context.get(RENDER_LOCALE)
    if isinstance(found, Locale):
        return found
    contact_locale = context.get("locale")
    return babel_locale(contact_locale if isinstance(contact_locale, str) else None)


def _tz(value: str | tzinfo | None) -> tzinfo | None:
    if value is None or value == "":
        return None  # a contact without a time zone: shown in the value's own offset
    if isinstance(value, tzinfo):
        return value
    return _zone(str(value))


def _defined(value: Any) -> None:
    if isinstance(value, Undefined):
        # StrictUndefined raises "'day' is undefined", which says more than "not a date"
        str(value)


def _from_iso(value: Any, *parsers: Callable[[str], T]) -> T | None:
    """``value`` read by the first of ``parsers`` (``fromisoformat`` methods) that accepts it;
    ``None`` if it is not a string or none does."""
    if isinstance(value, str):
        for parse in parsers:
            try:
                return parse(value.strip())
            except ValueError:
                pass
    return None


def _as_datetime(value: Any, filter_name: str) -> datetime:
    _defined(value)
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    parsed = _from_iso(value, datetime.fromisoformat)
    if parsed is not None:
        return parsed
    raise ValueError(
        f"{filter_name}: {value!r} is not a date and time (give a datetime or an ISO 8601 "
        "string such as '2026-06-01T15:30:00+02:00')"
    )


def _as_date(value: Any, filter_name: str) -> date:
    _defined(value)
    if isinstance(value, date):  # a datetime is a date too; Babel takes its date part
        return value
    parsed = _from_iso(value, date.fromisoformat, datetime.fromisoformat)
    if parsed is not None:
        return parsed
    raise ValueError(
        f"{filter_name}: {value!r} is not a date (give a date or an ISO 8601 string "
        "such as '2026-06-01')"
    )


def _as_time(value: Any, filter_name: str) -> time | datetime:
    _defined(value)
    if isinstance(value, time | datetime):
        return value
    parsed = _from_iso(value, *_TIME_PARSERS)
    if parsed is not None:
        return parsed
    raise ValueError(
        f"{filter_name}: {value!r} is not a time (give a time, a datetime or an ISO 8601 "
        "string such as '15:30')"
    )


def _as_number(value: Any, filter_name: str) -> int | float | Decimal:
    _defined(value)
    # bool is an int to Python, but "True" formatted as 1 is never what a template meant
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            pass
        else:
            if number.is_finite():
                return number
    raise ValueError(f"{filter_name}: {value!r} is not a number")


@pass_context
def format_date(
    context: Context, value: Any, format: str = "medium", locale: str | None = None
) -> str:
    """``{{ wedding_date|format_date }}`` -> ``Jun 1, 2026`` (en) or ``1 juin 2026`` (fr)."""
    day = _as_date(value, "format_date")
    return babel_dates.format_date(day, format=format, locale=_locale(context, locale))


@pass_context
def format_datetime(
    context: Context,
    value: Any,
    format: str = "medium",
    tz: str | tzinfo | None = None,
    locale: str | None = None,
) -> str:
    """A date and time, converted to ``tz`` when given (``tz=timezone`` is the contact's zone;
    a value without an offset is then read as UTC), else shown in the value's own offset."""
    moment = _as_datetime(value, "format_datetime")
    return babel_dates.format_datetime(
        moment, format=format, tzinfo=_tz(tz), locale=_locale(context, locale)
    )


@pass_context
def format_time(
    context: Context,
    value: Any,
    format: str = "medium",
    tz: str | tzinfo | None = None,
    locale: str | None = None,
) -> str:
    """A time of day (from a time, a datetime or an ISO string), converted to ``tz`` if given."""
    moment = _as_time(value, "format_time")
    return babel_dates.format_time(
        moment, format=format, tzinfo=_tz(tz), locale=_locale(context, locale)
    )


@pass_context
def format_decimal(
    context: Context, value: Any, format: str | None = None, locale: str | None = None
) -> str:
    """A number with the locale's separators: ``1,234.5`` (en), ``1 234,5`` (fr)."""
    number = _as_number(value, "format_decimal")
    return babel_numbers.format_decimal(number, format=format, locale=_locale(context, locale))


@pass_context
def format_number(context: Context, value: Any, locale: str | None = None) -> str:
    """A number in the locale's default pattern (Babel's own ``format_number`` is deprecated
    in favour of ``format_decimal``, which this calls)."""
    number = _as_number(value, "format_number")
    return babel_numbers.format_decimal(number, locale=_locale(context, locale))


@pass_context
def format_currency(
    context: Context,
    value: Any,
    currency: str,
    format: str | None = None,
    locale: str | None = None,
) -> str:
    """An amount of ``currency`` (ISO 4217): ``€1,234.50`` (en), ``1 234,50 €`` (fr)."""
    number = _as_number(value, "format_currency")
    code = str(currency).upper()
    try:
        babel_numbers.validate_currency(code)
    except babel_numbers.UnknownCurrencyError as e:
        raise ValueError(f"format_currency: unknown currency {currency!r}") from e
    return babel_numbers.format_currency(
        number, code, format=format, locale=_locale(context, locale)
    )


@pass_context
def format_percent(
    context: Context, value: Any, format: str | None = None, locale: str | None = None
) -> str:
    """A ratio as a percentage: ``0.25`` -> ``25%`` (en), ``25 %`` (fr)."""
    number = _as_number(value, "format_percent")
    return babel_numbers.format_percent(number, format=format, locale=_locale(context, locale))


FILTERS: dict[str, Callable[..., str]] = {
    "format_date": format_date,
    "format_datetime": format_datetime,
    "format_time": format_time,
    "format_number": format_number,
    "format_decimal": format_decimal,
    "format_currency": format_currency,
    "format_percent": format_percent,
}
