"""Normalising contact addresses: emails with email-validator, phones to E.164 with phonenumbers."""

from __future__ import annotations

import zoneinfo

import phonenumbers
from email_validator import EmailNotValidError, validate_email


def normalize_email(value: str) -> str:
    """Return the normalised address; raise ``ValueError`` with the reason if it is invalid."""
    try:
        # lower-cased whole: providers treat the local part case-insensitively, and a guest
        # imported twice as Ana@ and ana@ must be one contact, not two sends
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError as e:
        raise ValueError(f"invalid email address: {e}") from e


def normalize_phone(value: str, *, default_region: str | None = None) -> str:
    """Return the number in E.164; raise ``ValueError`` if it is not a valid number."""
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException as e:
        raise ValueError(
            f"invalid phone number {value!r}: use international format, e.g. +14155550123"
        ) from e
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"invalid phone number {value!r}: not a valid number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def check_timezone(value: str) -> str:
    """Return ``value`` if it is an IANA time zone name; raise ``ValueError`` otherwise."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(
            f"unknown time zone {value!r}: use an IANA name such as Europe/London"
        ) from e
    return value
