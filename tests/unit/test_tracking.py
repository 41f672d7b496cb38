"""Open and click tracking: signed tokens, link rewriting and the machine-fetch rules."""

from __future__ import annotations

import base64
import ipaddress
import re
import string
import uuid
from collections.abc import Callable

import pytest

from guestcomms.config import Settings
from guestcomms.tracking import tokens
from guestcomms.tracking.machine import (
    FAST_CLICK_SECONDS,
    PROXY_PREFETCH_SECONDS,
    MachineReason,
    classify_click,
    classify_open,
)
from guestcomms.tracking.rewrite import (
    PIXEL_GIF,
    TrackedContent,
    browser_url,
    decode_attribute,
    rewrite_for_tracking,
)
from guestcomms.tracking.tokens import (
    ClickClaim,
    OpenClaim,
    make_click_token,
    make_open_token,
    read_click_token,
    read_open_token,
    tracking_key,
)

KEY = tracking_key(Settings(secret_key="a-test-secret-of-enough-length-0123456789"))
ORG = uuid.UUID("0190a3f4-5b6c-7d8e-9f01-23456789abcd")
DELIVERY = uuid.UUID("0190a3f4-5b6c-7d8e-9f01-000000000042")
BASE = "https://gc.example.org"
URL = "https://shop.example.com/rsvp?guest=7&lang=en"
TOKEN_CHARS = string.ascii_letters + string.digits + "-_.=+/ "

IPHONE_MAIL = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)
DESKTOP_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
CUBOT_PHONE = (
    "Mozilla/5.0 (Linux; Android 10; CUBOT X20 PRO) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36"
)


def _click_token(url: str = URL, index: int = 3, links: int = 5) -> str:
    return make_click_token(
        KEY,
        organization_id=ORG,
        delivery_id=DELIVERY,
        link_index=index,
        url=url,
        links_in_message=links,
    )


def _uncounted_click_token(url: str = URL, index: int = 3) -> str:
    """A click token as made before the link count: kind 0x02, no count."""
    payload = bytes([2]) + ORG.bytes + DELIVERY.bytes + index.to_bytes(2, "big") + url.encode()
    return tokens._sign(KEY, payload)


def _rewrite(
    html: str | None,
    text: str | None = None,
    *,
    track_opens: bool = True,
    track_clicks: bool = True,
    exclude: Callable[[str], bool] | None = None,
) -> TrackedContent:
    return rewrite_for_tracking(
        key=KEY,
        base_url=BASE + "/",
        organization_id=ORG,
        delivery_id=DELIVERY,
        html=html,
        text=text,
        track_opens=track_opens,
        track_clicks=track_clicks,
        exclude=exclude,
    )


def _targets(content: str) -> list[str]:
    """The URLs behind every click redirect in ``content``, in order."""
    found = re.findall(re.escape(BASE) + r"/t/c/([A-Za-z0-9_.-]+)", content)
    # A token never ends with "."; a captured one is the sentence's full stop.
    claims = [read_click_token(KEY, token.rstrip(".")) for token in found]
    assert all(claims)
    return [claim.url for claim in claims if claim]


# tokens


def test_open_token_round_trips() -> None:
    """An open token reads back as the organization and delivery it was made for."""
    token = make_open_token(KEY, organization_id=ORG, delivery_id=DELIVERY)
    assert read_open_token(KEY, token) == OpenClaim(organization_id=ORG, delivery_id=DELIVERY)
    assert len(token) < 70  # binary UUIDs keep it short


def test_click_token_round_trips() -> None:
    """A click token reads back with its link index, the message's link count and its exact
    target URL."""
    claim = read_click_token(KEY, _click_token())
    assert claim == ClickClaim(
        organization_id=ORG, delivery_id=DELIVERY, link_index=3, url=URL, links_in_message=5
    )
    last = read_click_token(KEY, _click_token(index=65_535, links=65_536))
    assert last is not None
    assert (last.link_index, last.links_in_message) == (65_535, 65_536)


def test_click_tokens_made_before_the_link_count_still_read() -> None:
    """A token already in a sent email (kind 0x02) reads, with the count unknown."""
    claim = read_click_token(KEY, _uncounted_click_token())
    assert claim == ClickClaim(
        organization_id=ORG, delivery_id=DELIVERY, link_index=3, url=URL, links_in_message=None
    )


@pytest.mark.parametrize(("index", "links"), [(5, 5), (0, 0), (-1, 3), (0, 65_537)])
def test_a_link_index_outside_its_message_is_not_signed(index: int, links: int) -> None:
    """The index must name one of the message's links, and the count fit its two bytes."""
    with pytest.raises(ValueError, match="outside"):
        _click_token(index=index, links=links)


@pytest.mark.parametrize("payload", [b"", b"\x02", b"\x03" + bytes(36), b"\x03" + bytes(37)])
def test_signed_payloads_too_short_for_their_kind_read_as_none(payload: bytes) -> None:
    """Correctly signed but truncated payloads (none of ours) never raise and never read."""
    token = tokens._sign(KEY, payload)
    assert read_click_token(KEY, token) is None
    assert read_open_token(KEY, token) is None


def test_a_signed_index_past_the_count_is_refused_on_read() -> None:
    """A correctly signed payload whose index is not below its count was never made: None."""

    def payload(index: int, links: int) -> bytes:  # the count is stored as count - 1
        return (
            bytes([3])
            + ORG.bytes
            + DELIVERY.bytes
            + index.to_bytes(2, "big")
            + (links - 1).to_bytes(2, "big")
            + URL.encode()
        )

    last = read_click_token(KEY, tokens._sign(KEY, payload(3, 4)))
    assert last is not None
    assert (last.link_index, last.links_in_message) == (3, 4)
    assert read_click_token(KEY, tokens._sign(KEY, payload(4, 4))) is None


def test_tracking_key_depends_on_secret_and_is_not_the_secret() -> None:
    """The key is derived per secret and differs from the unsubscribe key's input."""
    secret = "a-test-secret-of-enough-length-0123456789"
    other = tracking_key(Settings(secret_key="another-secret-of-enough-length-987654321"))
    assert other != KEY
    assert secret.encode() not in KEY
    assert (
        read_open_token(other, make_open_token(KEY, organization_id=ORG, delivery_id=DELIVERY))
        is None
    )


@pytest.mark.parametrize("kind", ["open", "click", "uncounted click"])
def test_every_single_character_change_fails(kind: str) -> None:
    """Replacing, deleting or inserting any one character of a token makes it unreadable."""
    read: Callable[[bytes, str], object]
    if kind == "open":
        token = make_open_token(KEY, organization_id=ORG, delivery_id=DELIVERY)
        read = read_open_token
    else:
        token = _click_token() if kind == "click" else _uncounted_click_token()
        read = read_click_token
    assert read(KEY, token) is not None
    for position, original in enumerate(token):
        for char in TOKEN_CHARS:
            if char != original:
                changed = token[:position] + char + token[position + 1 :]
                assert read(KEY, changed) is None, (position, char)
        assert read(KEY, token[:position] + token[position + 1 :]) is None
        assert read(KEY, token[:position] + "A" + token[position:]) is None
    assert read(KEY, token + "A") is None


@pytest.mark.parametrize("counted", [True, False])
def test_every_single_bit_flip_of_the_payload_fails(counted: bool) -> None:
    """Flipping any bit of the decoded payload (re-encoded, MAC kept) fails to verify: the
    kind byte too, so a counted token never reads as an uncounted one or back."""
    encoded, mac = (_click_token() if counted else _uncounted_click_token()).split(".")
    payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    for byte in range(len(payload)):
        for bit in range(8):
            forged = bytearray(payload)
            forged[byte] ^= 1 << bit
            text = base64.urlsafe_b64encode(bytes(forged)).rstrip(b"=").decode()
            assert read_click_token(KEY, f"{text}.{mac}") is None


def test_open_and_click_tokens_do_not_cross() -> None:
    """An open token is not a click token, and a click token is not an open token."""
    open_token = make_open_token(KEY, organization_id=ORG, delivery_id=DELIVERY)
    assert read_click_token(KEY, open_token) is None
    assert read_open_token(KEY, _click_token()) is None


@pytest.mark.parametrize(
    "token", ["", ".", "abc", "a.b.c", "!!!.???", "AAAA.AAAA", "x" * 10_000 + ".AAAA"]
)
def test_malformed_tokens_read_as_none(token: str) -> None:
    """Garbage never raises and never verifies."""
    assert read_click_token(KEY, token) is None
    assert read_open_token(KEY, token) is None


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "mailto:guest@example.com",
        "ftp://example.com/file",
        "//evil.example/path",
        "/relative/path",
        "https://",
        "https:\\\\evil.example",
        "https://example.com/a b",
        "https://example.com/\r\nSet-Cookie: x=1",
        "data:text/html,hi",
    ],
)
def test_only_http_urls_are_signed(url: str) -> None:
    """A click token can only carry an absolute http(s) URL safe for a Location header."""
    with pytest.raises(ValueError, match="URL"):
        _click_token(url)


def test_a_signed_non_http_url_is_still_refused_on_read() -> None:
    """Even a correctly signed payload with a javascript: URL does not read as a click."""
    payload = bytes([2]) + ORG.bytes + DELIVERY.bytes + b"\x00\x00" + b"javascript:alert(1)"
    assert read_click_token(KEY, tokens._sign(KEY, payload)) is None


# rewriting

TRICKY = """<!DOCTYPE html>
<HTML><BODY>
<A HREF='https://shop.example.com/?a=1&amp;b=2' class=btn>Shop</A>
<a class="x" data-x='>' href="https://example.com/p?x=1&copy=2">Copy</a>
<a href=https://example.com/unquoted>U</a>
<a href="mailto:guest@example.com">Mail</a> <a href="tel:+15550100">Call</a>
<a href="#top">Top</a> <a>no href</a>
<!-- <a href="https://example.com/in-comment">c</a> -->
<a href="https://gc.example.org/u/UNSUB">Unsubscribe</a>
<a href="https://shop.example.com/?a=1&amp;b=2">Shop again</a>
<a href="https://skip.example.com/x">Skipped</a>
</BODY></HTML>
"""


def test_rewrite_tricky_html() -> None:
    """Quotes, case, attribute order and entities; non-http, comments and exclusions left."""
    result = _rewrite(TRICKY, exclude=lambda url: url.startswith("https://skip.example.com/"))
    assert result.links == (
        "https://shop.example.com/?a=1&b=2",
        "https://example.com/p?x=1&copy=2",
        "https://example.com/unquoted",
    )
    assert _targets(result.html) == [*result.links, "https://shop.example.com/?a=1&b=2"]
    for kept in (
        'href="mailto:guest@example.com"',
        'href="tel:+15550100"',
        'href="#top"',
        "<a>no href</a>",
        '<a href="https://example.com/in-comment">c</a>',
        '<a href="https://gc.example.org/u/UNSUB">',
        '<a href="https://skip.example.com/x">',
        "class=btn>Shop</A>",
        "<a class=\"x\" data-x='>' href=",
    ):
        assert kept in result.html, kept
    assert result.html.count("/t/o/") == 1
    assert result.html.index("/t/o/") < result.html.index("</BODY>")


def test_every_click_token_carries_the_number_of_links_in_the_email() -> None:
    """Each redirect, in either part, names its own link and the email's count of links,
    which is known only once both parts are read (the text part adds two links here)."""
    result = _rewrite(TRICKY, text="Also https://example.com/only-in-text and " + URL)
    found = re.findall(re.escape(BASE) + r"/t/c/([A-Za-z0-9_.-]+)", f"{result.html}\n{result.text}")
    claims = [read_click_token(KEY, token.rstrip(".")) for token in found]
    assert len(result.links) == 6  # four distinct in the HTML, two more in the text
    assert len(claims) == 7  # the HTML's five tracked anchors, the text's two URLs
    for claim in claims:
        assert claim is not None
        assert claim.links_in_message == 6
        assert result.links[claim.link_index] == claim.url


def test_rewrite_changes_nothing_but_hrefs_and_pixel() -> None:
    """Removing the rewritten hrefs and the pixel gives back the original's other bytes."""
    result = _rewrite(TRICKY)
    strip = re.compile(
        r"""href=("[^"]*"|'[^']*'|[^\s>]*)|<img src="[^"]*/t/o/[^>]*>""", re.IGNORECASE
    )
    assert strip.sub("", result.html) == strip.sub("", TRICKY)


def test_rewrite_is_idempotent() -> None:
    """Rewriting rewritten content changes nothing: no second pixel, no double redirect."""
    once = _rewrite(TRICKY, text="Go to https://example.com/p")
    twice = _rewrite(once.html, text=once.text)
    assert (twice.html, twice.text, twice.links) == (once.html, once.text, ())


def test_pixel_appended_without_body_and_is_a_gif() -> None:
    """Without </body> the pixel goes at the end; the pixel is a 43-byte 1x1 GIF."""
    result = _rewrite("<p>Hello</p>")
    assert result.html.startswith("<p>Hello</p><img src=")
    assert result.html.endswith('width="1" height="1" alt="" style="display:none">')
    token = re.search(r"/t/o/([A-Za-z0-9_.-]+)\.gif", result.html)
    assert token
    assert read_open_token(KEY, token.group(1)) == OpenClaim(ORG, DELIVERY)
    assert len(PIXEL_GIF) == 43
    assert PIXEL_GIF[:6] == b"GIF89a"
    assert PIXEL_GIF[-1:] == b";"
    assert PIXEL_GIF[6:10] == b"\x01\x00\x01\x00"  # 1 x 1


def test_text_part_urls_rewritten_and_share_indexes() -> None:
    """Bare URLs in text are wrapped, punctuation kept outside, indexes shared with HTML."""
    html = '<a href="https://example.com/a">A</a>'
    text = (
        "RSVP: https://example.com/b. Again https://example.com/a, "
        "(see https://en.example.org/wiki/X_(y)) mailto:x@y.org "
        "https://gc.example.org/u/UNSUB\n"
    )
    result = _rewrite(html, text)
    assert result.links == (
        "https://example.com/a",
        "https://example.com/b",
        "https://en.example.org/wiki/X_(y)",
    )
    assert _targets(result.text) == [
        "https://example.com/b",
        "https://example.com/a",
        "https://en.example.org/wiki/X_(y)",
    ]
    assert re.search(r"/t/c/[A-Za-z0-9_.-]+\. Again ", result.text)
    assert re.search(
        r"/t/c/[A-Za-z0-9_.-]+\) mailto:x@y.org https://gc.example.org/u/UNSUB\n$", result.text
    )


def test_tracking_switched_off() -> None:
    """With opens and clicks off the content is returned unchanged."""
    result = _rewrite(TRICKY, "https://example.com/", track_opens=False, track_clicks=False)
    assert (result.html, result.text, result.links) == (TRICKY, "https://example.com/", ())
    opens_only = _rewrite(TRICKY, track_clicks=False)
    assert "/t/c/" not in opens_only.html
    assert opens_only.html.count("/t/o/") == 1


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("https://x.org/?a=1&amp;b=2", "https://x.org/?a=1&b=2"),
        ("https://x.org/?a=1&copy=2", "https://x.org/?a=1&copy=2"),
        ("https://x.org/?a=1&copyx", "https://x.org/?a=1&copyx"),
        ("https://x.org/?a=1&copy;", "https://x.org/?a=1\u00a9"),
        ("https://x.org/&amp", "https://x.org/&"),
        ("https://x.org/?q=&#38;&#x26;", "https://x.org/?q=&&"),
        ("https://x.org/?a=&unknown;", "https://x.org/?a=&unknown;"),
    ],
)
def test_attribute_references_decode_as_in_a_browser(raw: str, decoded: str) -> None:
    """Character references in an href decode the way the HTML tokenizer decodes them."""
    assert decode_attribute(raw) == decoded


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        ("  https://x.org/a\n/b  ", "https://x.org/a/b"),
        ("HTTPS://x.org/a b", "HTTPS://x.org/a%20b"),
        ("https://x.org/caf\u00e9", "https://x.org/caf%C3%A9"),
        ("https://b\u00fccher.example/", "https://xn--bcher-kva.example/"),
        ("https://x.org/%41", "https://x.org/%41"),
        ("javascript:alert(1)", None),
        ("https://x.org\\@evil.example/", None),
    ],
)
def test_browser_url(raw: str, url: str | None) -> None:
    """An href value becomes the URL a browser would follow, or None if not trackable."""
    assert browser_url(raw) == url


# machine classification


@pytest.mark.parametrize(
    ("user_agent", "seconds", "reason"),
    [
        ("Mozilla/5.0", 3.0, MachineReason.APPLE_MPP),
        ("Mozilla/5.0", 7200.0, MachineReason.APPLE_MPP),
        (GMAIL_PROXY, 2.0, MachineReason.GOOGLE_IMAGE_PROXY),
        (GMAIL_PROXY, PROXY_PREFETCH_SECONDS + 600, None),
        (
            "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
            1.0,
            MachineReason.YAHOO_MAIL_PROXY,
        ),
        ("Barracuda Sentinel (EE)", 900.0, MachineReason.SCANNER_UA),
        ("python-requests/2.31.0", 900.0, MachineReason.SCANNER_UA),
        ("curl/8.5.0", 900.0, MachineReason.SCANNER_UA),
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            900.0,
            MachineReason.SCANNER_UA,
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0.0.0 Safari/537.36",
            900.0,
            MachineReason.SCANNER_UA,
        ),
        (None, 900.0, MachineReason.NO_USER_AGENT),
        ("", 900.0, MachineReason.NO_USER_AGENT),
        (IPHONE_MAIL, 60.0, None),
        (DESKTOP_CHROME, 60.0, None),
        (CUBOT_PHONE, 60.0, None),
    ],
)
def test_classify_open(
    user_agent: str | None, seconds: float, reason: MachineReason | None
) -> None:
    """Opens by Apple MPP, early proxy prefetch and scanners are machine; people are not."""
    verdict = classify_open(user_agent=user_agent, ip="203.0.113.9", seconds_since_send=seconds)
    assert verdict.reason == reason
    assert verdict.machine is (reason is not None)


def test_open_from_a_configured_network_is_machine() -> None:
    """An operator-configured network marks any open from it as machine."""
    networks = [ipaddress.ip_network("198.51.100.0/24")]
    inside = classify_open(
        user_agent=IPHONE_MAIL, ip="198.51.100.7", seconds_since_send=60, networks=networks
    )
    outside = classify_open(
        user_agent=IPHONE_MAIL, ip="203.0.113.9", seconds_since_send=60, networks=networks
    )
    assert inside.reason == MachineReason.KNOWN_NETWORK
    assert not outside.machine
    assert not classify_open(
        user_agent=IPHONE_MAIL, ip="not-an-ip", seconds_since_send=60, networks=networks
    ).machine


@pytest.mark.parametrize(
    ("user_agent", "seconds", "clicks", "links", "reason"),
    [
        (DESKTOP_CHROME, 2.0, 1, 5, MachineReason.FAST_CLICK),
        (DESKTOP_CHROME, FAST_CLICK_SECONDS - 0.1, 1, 5, MachineReason.FAST_CLICK),
        (DESKTOP_CHROME, 300.0, 3, 3, MachineReason.ALL_LINKS_CLICKED),
        (DESKTOP_CHROME, 300.0, 4, 10, MachineReason.CLICK_BURST),
        (DESKTOP_CHROME, 300.0, 4, None, MachineReason.CLICK_BURST),
        ("Mozilla/5.0", 300.0, 1, 5, MachineReason.SCANNER_UA),
        ("Mimecast-URL-Protect", 300.0, 1, 5, MachineReason.SCANNER_UA),
        (GMAIL_PROXY, 300.0, 1, 5, MachineReason.SCANNER_UA),
        (DESKTOP_CHROME, 300.0, 1, 1, None),  # the only link of a one-link message
        (DESKTOP_CHROME, 300.0, 2, 5, None),
        (IPHONE_MAIL, FAST_CLICK_SECONDS + 0.1, 1, 5, None),
    ],
)
def test_classify_click(
    user_agent: str, seconds: float, clicks: int, links: int | None, reason: MachineReason | None
) -> None:
    """Scanner user agents, instant clicks and clicking every link are machine; people not."""
    verdict = classify_click(
        user_agent=user_agent,
        ip="203.0.113.9",
        seconds_since_send=seconds,
        clicks_in_window=clicks,
        links_in_message=links,
    )
    assert verdict.reason == reason
    assert verdict.machine is (reason is not None)


def test_reasons_are_the_documented_strings() -> None:
    """Reasons compare equal to the strings stored with each event."""
    assert MachineReason.APPLE_MPP == "apple-mpp"
    assert MachineReason.GOOGLE_IMAGE_PROXY == "google-image-proxy"
    assert MachineReason.ALL_LINKS_CLICKED == "all-links-clicked"
