"""Which opens and clicks were made by machines rather than people.

Pure rules over what a tracking request carries (user agent, client IP, seconds since we sent
the message) and, for clicks, what the caller counted. Machine events are still stored, with
the verdict's reason; engagement rates leave them out by default. The rules, in the order they
are tried (the first that matches gives the reason):

Opens (``classify_open``)

1. ``no-user-agent``: no or an empty ``User-Agent``. Every mail client sends one.
2. ``known-network``: the IP is in a network the operator configured (``networks``, from the
   ``tracking_machine_networks`` setting); no vendor ranges are built in, because none are
   published for this purpose.
3. ``scanner-ua``: the user agent names a security gateway or an HTTP library, headless browser
   or crawler (``SCANNER_UA_TOKENS``, and a ``bot`` word: ``Googlebot/2.1`` but not the
   ``CUBOT`` phone brand).
4. ``apple-mpp``: the user agent is exactly ``Mozilla/5.0``. Apple Mail Privacy Protection
   fetches every remote image through Apple's proxy with that bare user agent, soon after the
   message reaches the device and whether or not the guest ever reads it; a reader's later
   open is served from that cache and never reaches us. Apple Mail without MPP sends a full
   user agent (``Mozilla/5.0 (iPhone; ...) AppleWebKit/...``) and counts as human.
5. ``google-image-proxy`` / ``yahoo-mail-proxy``: Gmail (``GoogleImageProxy``) and Yahoo Mail
   (``YahooMailProxy``) fetch images through a proxy when a person opens the message, so a
   proxy fetch is usually a real open. Within ``PROXY_PREFETCH_SECONDS`` of sending it is taken
   as the provider's prefetch at delivery instead: a person rarely opens that fast, and
   treating early fetches as machine keeps the human open rate conservative.

Clicks (``classify_click``): rules 1, 2 and 3 as for opens, then

* ``scanner-ua`` also for a bare ``Mozilla/5.0`` (no person's browser sends it) and for an
  image proxy's user agent (proxies fetch images, not links);
* ``fast-click``: the click comes less than ``FAST_CLICK_SECONDS`` after sending; link
  scanners (Safe Links, URL Defense and the like) follow links as the message arrives;
* ``all-links-clicked``: every tracked link of a message with at least
  ``ALL_LINKS_MINIMUM`` links was clicked within ``CLICK_BURST_WINDOW_SECONDS`` (the count of
  links rides in each click token; tokens made before it did leave this rule out);
* ``click-burst``: ``CLICK_BURST_LINKS`` or more distinct links were clicked within
  ``CLICK_BURST_WINDOW_SECONDS``. People click one link, maybe two.

The caller counts ``clicks_in_window``: the distinct link indexes of the same delivery clicked
in the ``CLICK_BURST_WINDOW_SECONDS`` before this click, this click's link included.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

PROXY_PREFETCH_SECONDS = 10.0  # an image-proxy fetch sooner than this after sending: prefetch
FAST_CLICK_SECONDS = 10.0  # a click sooner than this after sending: a link scanner
CLICK_BURST_WINDOW_SECONDS = 30.0  # the window in which distinct links are counted
CLICK_BURST_LINKS = 4  # distinct links clicked within the window: a scanner
ALL_LINKS_MINIMUM = 2  # "every link clicked" counts only for messages with this many links
APPLE_MPP_USER_AGENT = "Mozilla/5.0"

# Substrings (lower case) of the user agents of security gateways, HTTP libraries, headless
# browsers and crawlers, which fetch images and follow links without a person.
SCANNER_UA_TOKENS: tuple[str, ...] = (
    "barracuda",
    "mimecast",
    "proofpoint",
    "safelinks",
    "symantec",
    "forcepoint",
    "trendmicro",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "httpx",
    "curl/",
    "wget",
    "go-http-client",
    "java/",
    "okhttp",
    "apache-httpclient",
    "libwww-perl",
    "node-fetch",
    "axios/",
    "headlesschrome",
    "phantomjs",
    "crawler",
    "spider",
)
# "bot" as a word, or ending a product name before a "/", "-" or "_" ("Googlebot/2.1",
# "Slackbot-LinkExpanding"), so phone names like "CUBOT X19" do not match.
_BOT = re.compile(r"(?<![a-z])bot(?![a-z])|[a-z]bot[/_-]")

# Image proxies that fetch at open time (and may prefetch at delivery): token -> reason.
_IMAGE_PROXIES = {
    "googleimageproxy": "google-image-proxy",  # Gmail: "... (via ggpht.com GoogleImageProxy)"
    "yahoomailproxy": "yahoo-mail-proxy",  # Yahoo Mail: "YahooMailProxy; https://help.yahoo..."
}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class MachineReason(StrEnum):
    """Why an open or click was taken for a machine."""

    NO_USER_AGENT = "no-user-agent"
    KNOWN_NETWORK = "known-network"
    APPLE_MPP = "apple-mpp"
    SCANNER_UA = "scanner-ua"
    GOOGLE_IMAGE_PROXY = "google-image-proxy"
    YAHOO_MAIL_PROXY = "yahoo-mail-proxy"
    FAST_CLICK = "fast-click"
    ALL_LINKS_CLICKED = "all-links-clicked"
    CLICK_BURST = "click-burst"


@dataclass(frozen=True, slots=True)
class MachineVerdict:
    """Whether an event was made by a machine, and by which rule (``None`` for a person)."""

    machine: bool
    reason: MachineReason | None = None


HUMAN = MachineVerdict(machine=False)


def _machine(reason: MachineReason) -> MachineVerdict:
    return MachineVerdict(machine=True, reason=reason)


def _in_networks(ip: str | None, networks: Sequence[Network]) -> bool:
    if not ip or not networks:
        return False
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return False
    return any(address in network for network in networks)


def _is_scanner(agent: str) -> bool:
    lowered = agent.lower()
    return any(token in lowered for token in SCANNER_UA_TOKENS) or bool(_BOT.search(lowered))


def _image_proxy(agent: str) -> MachineReason | None:
    lowered = agent.lower()
    return next(
        (MachineReason(reason) for token, reason in _IMAGE_PROXIES.items() if token in lowered),
        None,
    )


def _common(agent: str, ip: str | None, networks: Sequence[Network]) -> MachineVerdict | None:
    """Rules shared by opens and clicks: no user agent, a known network, a scanner."""
    if not agent:
        return _machine(MachineReason.NO_USER_AGENT)
    if _in_networks(ip, networks):
        return _machine(MachineReason.KNOWN_NETWORK)
    if _is_scanner(agent):
        return _machine(MachineReason.SCANNER_UA)
    return None


def classify_open(
    *,
    user_agent: str | None,
    ip: str | None,
    seconds_since_send: float,
    networks: Sequence[Network] = (),
) -> MachineVerdict:
    """The verdict on one open-pixel fetch (rules in the module docstring)."""
    agent = (user_agent or "").strip()
    if verdict := _common(agent, ip, networks):
        return verdict
    if agent == APPLE_MPP_USER_AGENT:
        return _machine(MachineReason.APPLE_MPP)
    proxy = _image_proxy(agent)
    if proxy is not None and seconds_since_send < PROXY_PREFETCH_SECONDS:
        return _machine(proxy)
    return HUMAN


def classify_click(
    *,
    user_agent: str | None,
    ip: str | None,
    seconds_since_send: float,
    clicks_in_window: int,
    links_in_message: int | None = None,
    networks: Sequence[Network] = (),
) -> MachineVerdict:
    """The verdict on one click (rules in the module docstring).

    ``clicks_in_window`` counts distinct links of this delivery clicked within
    ``CLICK_BURST_WINDOW_SECONDS`` including this one; ``links_in_message`` is the number of
    tracked links in the delivery, when known.
    """
    agent = (user_agent or "").strip()
    if verdict := _common(agent, ip, networks):
        return verdict
    if agent == APPLE_MPP_USER_AGENT or _image_proxy(agent) is not None:
        return _machine(MachineReason.SCANNER_UA)
    if seconds_since_send < FAST_CLICK_SECONDS:
        return _machine(MachineReason.FAST_CLICK)
    if (
        links_in_message is not None
        and links_in_message >= ALL_LINKS_MINIMUM
        and clicks_in_window >= links_in_message
    ):
        return _machine(MachineReason.ALL_LINKS_CLICKED)
    if clicks_in_window >= CLICK_BURST_LINKS:
        return _machine(MachineReason.CLICK_BURST)
    return HUMAN
