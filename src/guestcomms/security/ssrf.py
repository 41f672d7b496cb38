"""The SSRF guard: outbound webhook and provider requests never reach internal addresses.

Organizations choose URLs we call (webhook endpoints, contacts' ``webhook_url``, provider
base URLs, push endpoints). Without a guard any of them could point the worker at
``http://169.254.169.254/`` (cloud credentials), ``http://127.0.0.1:5432`` or a host on the
private network. Three layers, one policy:

``is_forbidden_address(ip)``
    The pure policy: a reason ("a private address") for an address we refuse, else ``None``.
    IPv4 inside IPv6 (mapped, compatible, NAT64, 6to4, Teredo) is unwrapped and judged as IPv4.

``SsrfGuard.url_refusal(url)``
    Write-time checks (the API answers 422): only ``http``/``https``, no ``user@`` part, and a
    host that is a forbidden literal address, in any spelling a resolver accepts
    (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``[::ffff:127.0.0.1]``) or ``localhost``.
    DNS names are not resolved here: what a name resolves to can change, so it is judged at
    send time.

``GuardedConnector``
    Send-time checks: an ``aiohttp.TCPConnector`` that vets the addresses of every host it
    connects to, literal or resolved, and refuses the request (``ForbiddenTargetError``) if ANY
    is forbidden. It connects only to the addresses it vetted (aiohttp connects to what
    ``_resolve_host`` returns), so there is no second DNS lookup to rebind between check and
    connect. Every redirect hop is connected through the same connector, so a redirect to a
    private address is refused as well.

``allow_private`` (``GUESTCOMMS_ALLOW_PRIVATE_NETWORK_TARGETS``; on by default in dev and
test, where the provider simulator listens on 127.0.0.1) lets every address through except
cloud metadata ones; ``allowed_networks`` lets named networks through.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import ResolveResult

from guestcomms.errors import ValidationFailedError

if TYPE_CHECKING:
    from aiohttp.tracing import Trace

    from guestcomms.config import Settings

__all__ = [
    "ALLOWED_SCHEMES",
    "ForbiddenTargetError",
    "GuardedConnector",
    "IPAddress",
    "IPNetwork",
    "SsrfGuard",
    "is_forbidden_address",
    "parse_host_address",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = frozenset({"http", "https"})
METADATA = "a cloud metadata address"

# Checked in order, so the metadata addresses win over the ranges that contain them.
_IPV4_RULES: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), reason)
    for net, reason in (
        ("169.254.169.254/32", METADATA),  # AWS, GCP, Azure, OpenStack, DigitalOcean
        ("100.100.100.200/32", METADATA),  # Alibaba Cloud
        ("0.0.0.0/8", "an unspecified address"),  # "this network"; 0.0.0.0 reaches localhost
        ("127.0.0.0/8", "a loopback address"),
        ("10.0.0.0/8", "a private address"),  # RFC 1918
        ("172.16.0.0/12", "a private address"),
        ("192.168.0.0/16", "a private address"),
        ("100.64.0.0/10", "a carrier-grade NAT address"),  # RFC 6598
        ("169.254.0.0/16", "a link-local address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),  # includes 255.255.255.255
    )
)
_IPV6_RULES: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), reason)
    for net, reason in (
        ("fd00:ec2::254/128", METADATA),  # AWS over IPv6
        ("::/128", "an unspecified address"),
        ("::1/128", "a loopback address"),
        ("fc00::/7", "a private address"),  # unique local addresses
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),  # deprecated, still routed by some
        ("ff00::/8", "a multicast address"),
    )
)
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the IPv4 address in the low bits
_LOOPBACK6 = ipaddress.IPv6Address("::1")
_LOCALHOST_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_METADATA_NAMES = frozenset({"metadata.google.internal", "metadata"})
# What inet_aton accepts: 1-4 parts, each decimal, octal (leading 0) or hex (0x)
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$", re.IGNORECASE)


class ForbiddenTargetError(ValidationFailedError):
    """The URL points at an address guestcomms refuses to call (SSRF guard)."""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # (server, client): the client is where packets end up
    if (ip in _IPV4_COMPATIBLE or ip in _NAT64) and int(ip) & 0xFFFFFFFF and ip != _LOOPBACK6:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_forbidden_address(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be called ("a private address", ...), or ``None`` if it may be.

    Loopback, private (RFC 1918, unique local), link-local, cloud metadata, unspecified,
    multicast, reserved, carrier-grade NAT and anything else that is not globally routable are
    refused; an IPv4 address embedded in an IPv6 one is judged as itself.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", maxsplit=1)[0])
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = is_forbidden_address(inner)
            return f"{reason} (it embeds {inner})" if reason else None
        for net6, reason in _IPV6_RULES:
            if ip in net6:
                return reason
    else:
        for net4, reason in _IPV4_RULES:
            if ip in net4:
                return reason
    if not ip.is_global:  # documentation, benchmarking, protocol-assignment ranges...
        return "a non-public address"
    return None


def parse_host_address(host: str) -> IPAddress | None:
    """The address a URL host names literally, read as resolvers read it; ``None`` for a name.

    Accepts ``[::1]`` brackets, a zone (``fe80::1%eth0``), a trailing dot, and the legacy IPv4
    forms ``inet_aton`` accepts (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``).
    """
    text = host.strip().removeprefix("[").removesuffix("]").removesuffix(".")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:  # a part too large: no resolver reads it as an address either
            return None
    return None


@dataclass(frozen=True, slots=True)
class SsrfGuard:
    """The policy as configured: built by the composition root from settings.

    ``allow_private`` lets every address through except cloud metadata ones (development and
    tests, where the simulator is on 127.0.0.1); ``allowed_networks`` lets these through always.
    """

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> SsrfGuard:
        """The guard ``settings`` ask for (``allow_private_network_targets``)."""
        return cls(allow_private=settings.private_network_targets_allowed)

    def address_refusal(self, ip: IPAddress) -> str | None:
        """``"<ip> is <reason>"`` if the guard refuses ``ip``, else ``None``."""
        if any(ip.version == net.version and ip in net for net in self.allowed_networks):
            return None
        reason = is_forbidden_address(ip)
        if reason is None or (self.allow_private and not reason.startswith(METADATA)):
            return None
        return f"{ip} is {reason}"

    def url_refusal(self, url: str) -> str | None:
        """Why ``url`` may never be called, judged without DNS; ``None`` if it may be tried.

        Called when a URL is stored (the API answers 422 with the reason); names are judged
        again, resolved, by :class:`GuardedConnector` at send time.
        """
        if "\\" in url or any(ord(c) < 0x21 for c in url):
            return "the URL contains a backslash, a space or a control character"
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as e:
            return f"the URL does not parse: {e}"
        if parts.scheme.lower() not in ALLOWED_SCHEMES:
            return f"only http and https URLs are allowed, not {parts.scheme or 'none'!r}"
        if "@" in parts.netloc:
            return "a URL with credentials (user@host) is not allowed"
        host = parts.hostname
        if not host:
            return "the URL has no host"
        return self.host_refusal(host)

    def host_refusal(self, host: str) -> str | None:
        """Why a literal ``host`` is refused (an address or a well-known local name), or
        ``None``; ordinary names resolve at send time."""
        address = parse_host_address(host)
        if address is not None:
            return self.address_refusal(address)
        name = host.lower().rstrip(".")
        if name in _METADATA_NAMES:
            return f"{host} is {METADATA}"
        local = name in _LOCALHOST_NAMES or name.endswith(".localhost")
        if local and not self.allow_private:
            return f"{host} is a loopback name"
        return None

    def check_url(self, url: str, *, field: str) -> None:
        """Raise :class:`ForbiddenTargetError` (422, naming ``field``) if ``url`` is refused."""
        reason = self.url_refusal(url)
        if reason is not None:
            raise ForbiddenTargetError(f"{field}: {reason}", field=field)

    def vet(self, host: str, addresses: Iterable[str]) -> None:
        """Raise :class:`ForbiddenTargetError` if any of ``host``'s ``addresses`` is refused."""
        for text in addresses:
            address = parse_host_address(text)
            refusal = (
                f"{text} is not an IP address" if address is None else self.address_refusal(address)
            )
            if refusal is not None:
                literal = parse_host_address(host) is not None
                raise ForbiddenTargetError(refusal if literal else f"{refusal} ({host})")

    def connector(self, **kwargs: Any) -> GuardedConnector:
        """A :class:`GuardedConnector` for this guard (``kwargs`` as for TCPConnector,
        e.g. ``limit``, ``resolver``)."""
        return GuardedConnector(guard=self, **kwargs)


class GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector that connects only to addresses the guard allows.

    aiohttp connects to exactly the addresses ``_resolve_host`` returns (literal hosts skip the
    resolver but come through here too), so vetting them here pins the connection to what was
    checked. Raises :class:`ForbiddenTargetError` out of ``session.request``.
    """

    def __init__(self, *, guard: SsrfGuard, **kwargs: Any) -> None:
        """Wrap ``TCPConnector(**kwargs)`` with ``guard``."""
        super().__init__(**kwargs)
        self.guard = guard

    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Trace] | None = None
    ) -> list[ResolveResult]:
        refusal = self.guard.host_refusal(host)  # a literal refused before any lookup
        if refusal is not None:
            raise ForbiddenTargetError(refusal)
        results = await super()._resolve_host(host, port, traces=traces)
        self.guard.vet(host, [r["host"] for r in results])
        return results
