"""The guest-facing tracking routes: the open pixel ``GET /t/o/{token}.gif`` and the click
redirect ``GET /t/c/{token}``.

No API key: the signed token (``tracking/tokens.py``) is the credential and names the
organization, the delivery and, for a click, the link's target. A token that does not verify,
is of the other kind, or names a delivery the organization no longer has is a 404; nothing
ever redirects anywhere but to the URL under the token's signature. Every request that passes
is stored as a ``TrackingEvent`` with the machine rules' verdict (``tracking/machine.py``).
Both routes are left out of the OpenAPI schema, like the unsubscribe routes ``/u/{token}``:
they are links in emails, not API.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from guestcomms.api.deps import RuntimeDep, SessionDep
from guestcomms.domain.clock import utc_now
from guestcomms.errors import NotFoundError
from guestcomms.tracking.rewrite import PIXEL_GIF
from guestcomms.tracking.service import Visitor, record_click, record_open
from guestcomms.tracking.tokens import read_click_token, read_open_token, tracking_key

router = APIRouter(include_in_schema=False)
# every fetch must reach us to be counted, and the tracked URLs must not leak onwards
_NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
    "Referrer-Policy": "no-referrer",
}


def _visitor(request: Request) -> Visitor:
    return Visitor(
        user_agent=request.headers.get("user-agent"),
        ip=request.client.host if request.client else None,
    )


@router.get("/t/o/{token}.gif")
async def open_pixel(
    token: str, request: Request, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """The 1x1 transparent GIF; the fetch is recorded as an open of the token's delivery."""
    claim = read_open_token(tracking_key(runtime.settings), token)
    if claim is None:
        raise NotFoundError("unknown tracking link")
    async with session.begin():
        await record_open(session, claim, visitor=_visitor(request), now=utc_now())
    return Response(PIXEL_GIF, media_type="image/gif", headers=_NO_CACHE)


@router.get("/t/c/{token}")
async def click_redirect(
    token: str, request: Request, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """A 302 to the link's target (the URL signed into the token, and no other); the click
    is recorded first."""
    claim = read_click_token(tracking_key(runtime.settings), token)
    if claim is None:
        raise NotFoundError("unknown tracking link")
    async with session.begin():
        await record_click(session, claim, visitor=_visitor(request), now=utc_now())
    # Location is the signed URL byte for byte (printable ASCII, checked on reading the token);
    # RedirectResponse would quote it again
    return Response(status_code=status.HTTP_302_FOUND, headers={"Location": claim.url, **_NO_CACHE})
