"""The SSRF guard's pure policy: which addresses and URLs are refused, in every spelling."""

from __future__ import annotations

import ipaddress

import pytest

from guestcomms.config import Environment, Settings
from guestcomms.errors import ValidationFailedError
from guestcomms.security.ssrf import (
    ForbiddenTargetError,
    SsrfGuard,
    is_forbidden_address,
    parse_host_address,
)

PUBLIC_IP = "93.184.215.14"  # a public address; never connected to (no network here)
STRICT = SsrfGuard()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1", "127.0.0.1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata"),
        ("http://[::1]:8080/hook", "::1 is a loopback address"),
        ("http://2130706433", "127.0.0.1 is a loopback address"),
        ("http://0177.0.0.1", "127.0.0.1 is a loopback address"),
        ("http://0x7f.1", "127.0.0.1 is a loopback address"),
        ("http://127.1", "127.0.0.1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]", "a loopback address (it embeds 127.0.0.1)"),
        ("http://localhost.", "localhost. is a loopback name"),
        ("http://LOCALHOST/x", "is a loopback name"),
        ("http://api.localhost/x", "is a loopback name"),
        ("http://metadata.google.internal/", "a cloud metadata address"),
        ("file:///etc/passwd", "only http and https URLs are allowed, not 'file'"),
        ("gopher://127.0.0.1:6379/_INFO", "not 'gopher'"),
        ("http://10.0.0.1/hook", "10.0.0.1 is a private address"),
        ("http://[fd00:ec2::254]/", "a cloud metadata address"),
        ("http://[fe80::1%25eth0]/", "a link-local address"),
        ("http://public.example@127.0.0.1/", "credentials (user@host)"),
        ("http://public.example\\@127.0.0.1/", "backslash"),
        ("http:///no-host", "no host"),
    ],
)
def test_refused_urls_name_the_reason(url: str, expected: str) -> None:
    """Every acceptance URL and encoding is refused without DNS, with a readable reason."""
    reason = STRICT.url_refusal(url)
    assert reason is not None
    assert expected in reason


@pytest.mark.parametrize(
    "url",
    [f"http://{PUBLIC_IP}/hook", f"https://{PUBLIC_IP}:8443/", "https://hooks.example.com/x"],
)
def test_public_addresses_and_names_are_allowed(url: str) -> None:
    """A public literal passes; a name passes write-time checks (judged when resolved)."""
    assert STRICT.url_refusal(url) is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.53", "a loopback address"),
        ("0.0.0.0", "an unspecified address"),  # noqa: S104 - an address under test
        ("10.1.2.3", "a private address"),
        ("172.31.255.255", "a private address"),
        ("192.168.1.1", "a private address"),
        ("100.64.0.1", "a carrier-grade NAT address"),
        ("169.254.10.10", "a link-local address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("224.0.0.1", "a multicast address"),
        ("255.255.255.255", "a reserved address"),
        ("192.0.2.1", "a non-public address"),  # documentation range
        ("::", "an unspecified address"),
        ("::1", "a loopback address"),
        ("fc00::1", "a private address"),
        ("fd12:3456::1", "a private address"),
        ("fe80::1", "a link-local address"),
        ("ff02::1", "a multicast address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("::ffff:10.0.0.1", "a private address (it embeds 10.0.0.1)"),
        ("::127.0.0.1", "a loopback address (it embeds 127.0.0.1)"),  # IPv4-compatible
        ("64:ff9b::a9fe:a9fe", "a cloud metadata address (it embeds 169.254.169.254)"),  # NAT64
        ("2002:7f00:1::", "a loopback address (it embeds 127.0.0.1)"),  # 6to4
    ],
)
def test_forbidden_addresses(address: str, reason: str) -> None:
    """Each class of internal address is refused with its own reason."""
    assert is_forbidden_address(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", [PUBLIC_IP, "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass_the_policy(address: str) -> None:
    """Globally routable addresses (and a public IPv4 inside IPv6) are not refused."""
    assert is_forbidden_address(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7F000001", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("example.com", None),
        ("0xdead.beef", None),
        ("99999999999", None),
    ],
)
def test_hosts_are_read_as_resolvers_read_them(host: str, address: str | None) -> None:
    """Legacy numeric IPv4 forms parse to the address inet_aton gives; names give None."""
    parsed = parse_host_address(host)
    assert (str(parsed) if parsed else None) == address


def test_allow_private_still_refuses_metadata() -> None:
    """Development's allowance lets loopback and private through, never cloud metadata."""
    guard = SsrfGuard(allow_private=True)
    assert guard.url_refusal("http://127.0.0.1:8000/") is None
    assert guard.url_refusal("http://10.0.0.1/") is None
    assert guard.url_refusal("http://localhost/") is None
    assert guard.url_refusal("http://169.254.169.254/") is not None
    assert guard.url_refusal("http://[::ffff:169.254.169.254]/") is not None
    assert guard.url_refusal("file:///etc/passwd") is not None


def test_allowed_networks_let_named_networks_through() -> None:
    """An explicit allow-list admits its networks only."""
    guard = SsrfGuard(allowed_networks=(ipaddress.ip_network("10.20.0.0/16"),))
    assert guard.url_refusal("http://10.20.1.1/") is None
    assert guard.url_refusal("http://10.21.1.1/") == "10.21.1.1 is a private address"


def test_vet_refuses_if_any_resolved_address_is_forbidden() -> None:
    """One internal address among a name's answers refuses the whole name."""
    STRICT.vet("hooks.example.com", [PUBLIC_IP])
    with pytest.raises(ForbiddenTargetError, match=r"10\.0\.0\.1 is a private address"):
        STRICT.vet("hooks.example.com", [PUBLIC_IP, "10.0.0.1"])


def test_check_url_raises_a_422_naming_the_field() -> None:
    """Write-time refusal is a validation error (422) that names the field."""
    with pytest.raises(ValidationFailedError) as raised:
        STRICT.check_url("http://127.0.0.1/", field="url")
    assert raised.value.status == 422
    assert raised.value.field == "url"


def test_private_targets_are_allowed_by_default_only_outside_production() -> None:
    """Unset, the allowance follows the environment; an explicit value wins."""
    assert Settings(environment=Environment.TEST).private_network_targets_allowed
    assert Settings(environment=Environment.DEV).private_network_targets_allowed
    production = Settings(environment=Environment.PRODUCTION, secret_key="s3cret-for-tests")
    assert not production.private_network_targets_allowed
    assert not Settings(allow_private_network_targets=False).private_network_targets_allowed
    assert SsrfGuard.from_settings(production) == SsrfGuard(allow_private=False)
