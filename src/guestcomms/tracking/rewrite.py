"""Rewrite a rendered email for tracking: click redirects and an open pixel.

Called by the send path after rendering and before MIME assembly, once per delivery. Every
``<a href="http(s)://...">`` in the HTML part and every bare ``http(s)://`` URL in the text
part becomes ``{base}/t/c/{click token}``; the HTML part gains one open pixel
``<img src="{base}/t/o/{open token}.gif" ...>`` before ``</body>`` (or at the end).

What is left alone: ``mailto:``, ``tel:``, ``#anchors`` and every other non-http(s) link;
links into our own tracking (``/t/``) and unsubscribe (``/u/``) paths, so that rewriting
twice changes nothing and the RFC 8058 link stays direct; links the caller's ``exclude``
predicate names; links inside comments (Outlook's ``<!--[if mso]>`` VML buttons included),
``<script>`` and ``<style>``; and URLs that cannot be redirected safely (see
``tokens.is_redirectable``) or are longer than ``tokens.MAX_URL_BYTES``.

The HTML is edited in place: only the first ``href`` attribute of a tracked ``<a>`` tag is
replaced; everything else, byte for byte, stays as it was. The redirect target is the URL the
browser would have followed: character references decoded as in an attribute value (so
``&amp;`` is ``&``, but ``&copy=2`` in a query stays literal), surrounding whitespace
stripped, tabs and newlines dropped, and characters not allowed in a URL percent-encoded.

Links are numbered in order of first appearance, HTML part first: one index per distinct URL,
so the same URL in the HTML and the text part (or twice in one part) shares its index. Every
click token also carries the number of distinct links (the machine rule ``all-links-clicked``
needs it), so both parts are scanned before any redirect is made.
"""

from __future__ import annotations

import html as html_lib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from html.entities import html5
from html.parser import HTMLParser
from urllib.parse import quote, urlsplit

from guestcomms.tracking.tokens import (
    MAX_URL_BYTES,
    is_redirectable,
    make_click_token,
    make_open_token,
)

CLICK_PATH = "/t/c/"
OPEN_PATH = "/t/o/"
OPEN_PIXEL_SUFFIX = ".gif"
UNSUBSCRIBE_PATH = "/u/"  # compliance/unsubscribe.py: never wrapped in a redirect

# A 1x1 transparent GIF89a: header, logical screen (1x1, 2-colour global table), graphic
# control extension (transparent index 0), image descriptor, LZW data, trailer.
PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
    b"!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00"
    b"\x02\x02D\x01\x00;"
)

# One attribute of a start tag, after the HTML tokenizer: a name up to space, "/", ">" or "=",
# then optionally "=" and a double-quoted, single-quoted or unquoted value.
_ATTRIBUTE = re.compile(
    r"""[\s/]*(?P<name>[^\s/>][^\s/>=]*)(?:\s*=\s*(?P<value>"[^"]*"|'[^']*'|[^\s>]*))?"""
)
_TAG_NAME = re.compile(r"<[^\s/>]+")
# A character reference: numeric, or a named one with or without its semicolon.
_CHARREF = re.compile(r"&(?:#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[A-Za-z][A-Za-z0-9]*;?)")
_TEXT_URL = re.compile(r"\bhttps?://[^\s<>\"'\x00-\x1f\x7f]+", re.IGNORECASE)
_TRAILING_PUNCTUATION = ".,;:!?*'\""
_CLOSERS = {")": "(", "]": "[", "}": "{"}
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"  # plus letters, digits and "_.-", which quote() keeps
_STRIP = "".join(chr(c) for c in range(0x21))  # C0 controls and space, as browsers strip


@dataclass(frozen=True, slots=True)
class TrackedContent:
    """A delivery's content after rewriting; ``links[i]`` is the target of link index ``i``."""

    html: str | None
    text: str | None
    links: tuple[str, ...]


def click_url(base_url: str, token: str) -> str:
    """The redirect URL that carries a click token."""
    return f"{base_url.rstrip('/')}{CLICK_PATH}{token}"


def open_pixel_url(base_url: str, token: str) -> str:
    """The open pixel's URL that carries an open token."""
    return f"{base_url.rstrip('/')}{OPEN_PATH}{token}{OPEN_PIXEL_SUFFIX}"


def browser_url(raw: str) -> str | None:
    """The URL a browser follows for a (decoded) href value, or ``None`` if not trackable."""
    url = raw.strip(_STRIP).replace("\t", "").replace("\n", "").replace("\r", "")
    if not url.lower().startswith(("http://", "https://")) or "\\" in url:
        return None
    try:
        netloc = urlsplit(url).netloc
        if not netloc.isascii():
            url = url.replace(netloc, netloc.encode("idna").decode("ascii"), 1)
    except (ValueError, UnicodeError):
        return None
    url = quote(url, safe=_URL_SAFE)
    return url if is_redirectable(url) and len(url) <= MAX_URL_BYTES else None


def decode_attribute(value: str) -> str:
    """``value`` with its character references decoded as the HTML tokenizer does in an
    attribute: a named reference without ";" followed by "=" or a letter or digit stays
    literal (``?a=1&copy=2`` keeps ``&copy``)."""

    def replace(match: re.Match[str]) -> str:
        ref = match.group()
        if ref.startswith("&#") or (ref.endswith(";") and ref[1:] in html5):
            return html_lib.unescape(ref)
        name = ref[1:].rstrip(";")
        for end in range(len(name), 0, -1):
            if name[:end] in html5:  # a legacy reference, valid without its ";"
                following = ref[1 + end : end + 2] or value[match.end() : match.end() + 1]
                if end < len(name) or following == "=" or following.isalnum():
                    return ref
                return html5[name[:end]] + ref[1 + end :]
        return ref

    return _CHARREF.sub(replace, value)


class _Links:
    """Numbers distinct URLs, then makes their redirect URLs, for one delivery.

    Two steps, because every click token carries the number of links in the message: the
    parts are scanned first (``number``), and the redirects made once all are known (``url``).
    """

    def __init__(
        self,
        *,
        key: bytes,
        base_url: str,
        organization_id: uuid.UUID,
        delivery_id: uuid.UUID,
        exclude: Callable[[str], bool] | None,
    ) -> None:
        self._key, self._base = key, base_url.rstrip("/")
        self._organization_id, self._delivery_id = organization_id, delivery_id
        self._exclude = exclude
        self._own = tuple(
            f"{self._base}{path}" for path in (CLICK_PATH, OPEN_PATH, UNSUBSCRIBE_PATH)
        )
        self.urls: list[str] = []
        self._index: dict[str, int] = {}

    def number(self, raw: str) -> int | None:
        """The link index of ``raw`` (already entity-decoded), or ``None`` if left alone."""
        url = browser_url(raw)
        if url is None or url.startswith(self._own) or (self._exclude and self._exclude(url)):
            return None
        index = self._index.get(url)
        if index is None:
            index = self._index[url] = len(self.urls)
            self.urls.append(url)
        return index

    def url(self, index: int) -> str:
        """The redirect URL of link ``index``; call once every link is numbered."""
        token = make_click_token(
            self._key,
            organization_id=self._organization_id,
            delivery_id=self._delivery_id,
            link_index=index,
            url=self.urls[index],
            links_in_message=len(self.urls),
        )
        return click_url(self._base, token)


@dataclass(frozen=True, slots=True)
class _Edit:
    """Replace ``source[start:end]`` with ``text``, or with link ``link``'s redirect URL (as
    an ``href`` attribute when ``href``)."""

    start: int
    end: int
    text: str = ""
    link: int | None = None
    href: bool = False

    def replacement(self, links: _Links | None) -> str:
        if self.link is None or links is None:
            return self.text
        url = links.url(self.link)
        return f'href="{html_lib.escape(url)}"' if self.href else url


def _apply(source: str, edits: list[_Edit], links: _Links | None) -> str:
    for edit in sorted(edits, key=lambda e: (e.start, e.end), reverse=True):
        source = source[: edit.start] + edit.replacement(links) + source[edit.end :]
    return source


class _Scan(HTMLParser):
    """Finds ``<a>`` start tags, an existing open pixel and the last ``</body>``."""

    def __init__(self, source: str, pixel_prefix: str) -> None:
        super().__init__(convert_charrefs=True)
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", source)]
        self._pixel_prefix = pixel_prefix
        self.anchors: list[tuple[int, str]] = []  # (offset, the tag's source text)
        self.body_end: int | None = None
        self.has_pixel = False

    def _offset(self) -> int:
        line, column = self.getpos()
        return self._line_starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        text = self.get_starttag_text()
        if tag == "a" and text is not None:
            self.anchors.append((self._offset(), text))
        elif tag == "img":
            src = next((v for k, v in attrs if k == "src"), None) or ""
            self.has_pixel = self.has_pixel or src.startswith(self._pixel_prefix)

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.body_end = self._offset()


def _href_edit(tag: str, offset: int, links: _Links) -> _Edit | None:
    """The edit of the first ``href`` attribute of ``tag`` (at ``offset`` in the source)."""
    start = _TAG_NAME.match(tag)
    position = start.end() if start else len(tag)
    while (match := _ATTRIBUTE.match(tag, position)) and match.end() > position:
        position = match.end()
        if match.group("name").lower() != "href":
            continue
        value = match.group("value")
        if not value:
            return None
        if value[0] in "\"'":
            value = value[1:-1]
        index = links.number(decode_attribute(value))
        if index is None:
            return None
        return _Edit(offset + match.start("name"), offset + match.end(), link=index, href=True)
    return None


def _html_edits(
    source: str, *, links: _Links | None, pixel_url: str | None, base: str
) -> list[_Edit]:
    scan = _Scan(source, pixel_prefix=f"{base}{OPEN_PATH}")
    scan.feed(source)
    scan.close()
    edits: list[_Edit] = []
    for offset, tag in scan.anchors:
        # The tag's text is checked against the source so an offset can never be misapplied.
        if links is None or not source.startswith(tag, offset):
            continue
        if edit := _href_edit(tag, offset, links):
            edits.append(edit)
    if pixel_url and not scan.has_pixel:
        pixel = (
            f'<img src="{html_lib.escape(pixel_url)}" width="1" height="1" alt=""'
            ' style="display:none">'
        )
        at = scan.body_end if scan.body_end is not None else len(source)
        edits.append(_Edit(at, at, pixel))
    return edits


def _trim_text_url(url: str) -> str:
    """``url`` without the sentence punctuation or unbalanced brackets that follow it."""
    while url:
        last = url[-1]
        opener = _CLOSERS.get(last)
        if last in _TRAILING_PUNCTUATION or (opener and url.count(opener) < url.count(last)):
            url = url[:-1]
        else:
            break
    return url


def _text_edits(source: str, links: _Links) -> list[_Edit]:
    edits: list[_Edit] = []
    for match in _TEXT_URL.finditer(source):
        url = _trim_text_url(match.group())
        index = links.number(url)
        if index is not None:
            edits.append(_Edit(match.start(), match.start() + len(url), link=index))
    return edits


def rewrite_for_tracking(
    *,
    key: bytes,
    base_url: str,
    organization_id: uuid.UUID,
    delivery_id: uuid.UUID,
    html: str | None,
    text: str | None,
    track_opens: bool = True,
    track_clicks: bool = True,
    exclude: Callable[[str], bool] | None = None,
) -> TrackedContent:
    """``html`` and ``text`` with their links wrapped in click redirects and an open pixel.

    ``track_opens`` and ``track_clicks`` carry the organization's and the message's switches
    (the caller resolves them). ``exclude`` names more URLs (as the browser would follow them)
    to leave alone. Returns the new parts (``None`` stays ``None``) and the tracked links.
    """
    links = None
    if track_clicks:
        links = _Links(
            key=key,
            base_url=base_url,
            organization_id=organization_id,
            delivery_id=delivery_id,
            exclude=exclude,
        )
    pixel_url = None
    if track_opens:
        token = make_open_token(key, organization_id=organization_id, delivery_id=delivery_id)
        pixel_url = open_pixel_url(base_url, token)
    # every link is numbered, HTML part first, before any redirect is made (``_Links``)
    html_edits = text_edits = None
    if html is not None and (links or pixel_url):
        html_edits = _html_edits(html, links=links, pixel_url=pixel_url, base=base_url.rstrip("/"))
    if text is not None and links:
        text_edits = _text_edits(text, links)
    if html is not None and html_edits is not None:
        html = _apply(html, html_edits, links)
    if text is not None and text_edits is not None:
        text = _apply(text, text_edits, links)
    return TrackedContent(html=html, text=text, links=tuple(links.urls) if links else ())
