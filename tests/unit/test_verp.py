"""VERP return paths: one envelope sender per delivery, read back from a bounce's recipient."""

from __future__ import annotations

import uuid

import pytest

from guestcomms.channels.verp import delivery_from_return_path, return_path

DOMAIN = "bounces.example.org"
DELIVERY = uuid.UUID("0190a3f4-5b6c-7d8e-9f01-23456789abcd")


def test_round_trip() -> None:
    """A return path encodes the delivery's public id and decodes back to the same id."""
    address = return_path(delivery_id=DELIVERY, bounce_domain=DOMAIN)
    assert address == f"bounces+dlv_{DELIVERY.hex}@{DOMAIN}"
    assert delivery_from_return_path(address, bounce_domain=DOMAIN) == DELIVERY


def test_custom_local_part_round_trips() -> None:
    """A local part other than "bounces" is used and required on the way back."""
    address = return_path(delivery_id=DELIVERY, bounce_domain=DOMAIN, local_part="rp")
    assert address.startswith("rp+dlv_")
    assert delivery_from_return_path(address, bounce_domain=DOMAIN, local_part="rp") == DELIVERY
    assert delivery_from_return_path(address, bounce_domain=DOMAIN) is None


@pytest.mark.parametrize(
    "address",
    [
        f"<bounces+dlv_{DELIVERY.hex}@{DOMAIN}>",
        f"  bounces+dlv_{DELIVERY.hex}@{DOMAIN.upper()}  ",
        f"Bounces+DLV_{DELIVERY.hex.upper()}@{DOMAIN}.",
    ],
)
def test_tolerates_brackets_case_and_whitespace(address: str) -> None:
    """Angle brackets, surrounding space and changes of case still name the delivery."""
    assert delivery_from_return_path(address, bounce_domain=DOMAIN) == DELIVERY


@pytest.mark.parametrize(
    "address",
    [
        f"bounces+dlv_{DELIVERY.hex}@other.example.org",
        f"bounces+dlv_{DELIVERY.hex}@sub.{DOMAIN}",
    ],
)
def test_wrong_domain_is_refused(address: str) -> None:
    """An address of any other domain, a subdomain included, is not ours."""
    assert delivery_from_return_path(address, bounce_domain=DOMAIN) is None


@pytest.mark.parametrize(
    "address",
    [
        "",
        "<>",
        "garbage",
        f"@{DOMAIN}",
        f"bounces@{DOMAIN}",
        f"bounces+@{DOMAIN}",
        f"postmaster+dlv_{DELIVERY.hex}@{DOMAIN}",
        f"bounces+msg_{DELIVERY.hex}@{DOMAIN}",
        f"bounces+dlv_{DELIVERY.hex[:-1]}@{DOMAIN}",
        f"bounces+dlv_{DELIVERY.hex}0@{DOMAIN}",
        f"bounces+dlv_{'g' * 32}@{DOMAIN}",
        f"bounces+dlv_{'٣' * 32}@{DOMAIN}",  # Arabic-Indic digits that int() would accept
        f"bounces+dlv_{DELIVERY.hex}+x@{DOMAIN}",
        f"<<bounces+dlv_{DELIVERY.hex}@{DOMAIN}>>",
        f"Bounces <bounces+dlv_{DELIVERY.hex}@{DOMAIN}>",
    ],
)
def test_garbage_is_refused(address: str) -> None:
    """Anything that is not exactly a VERP address of ours gives None, never an error."""
    assert delivery_from_return_path(address, bounce_domain=DOMAIN) is None


@pytest.mark.parametrize(
    ("domain", "local_part"),
    [("", "bounces"), ("a b.example", "bounces"), (DOMAIN, "b+x"), (DOMAIN, ""), ("x@y", "b")],
)
def test_return_path_refuses_what_would_not_round_trip(domain: str, local_part: str) -> None:
    """A domain or local part that could not be read back is a ValueError at build time."""
    with pytest.raises(ValueError, match="VERP"):
        return_path(delivery_id=DELIVERY, bounce_domain=domain, local_part=local_part)
