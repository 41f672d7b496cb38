"""The guest-facing tracking routes: the open pixel ``GET /t/o/{token}.gif`` and the click
redirect ``GET /t/c/{token}``.

No API key: the signed token (``tracking/tokens.py``) is the credential and names the
organization, the delivery and, for a click, the link's target. A token that does not verify,
is of the other kind, or names a delivery the organization no longer has is a 404 problem
(``NotFoundError``, mapped in ``api/problems.py``); nothing ever redirects anywhere but to the
URL under the token's signature. Every request that passes is stored as a ``TrackingEvent``
with the machine rules' verdict (``tracking/machine.py``) before it is answered.

These are plain Starlette routes, not FastAPI ones, placed ahead of the API's routers: a pixel
needs no dependency injection, validation or session per request (FastAPI ran the runtime
dependency in a worker thread on every fetch), and the recorder (``tracking/recorder.py``)
writes the hits in batches. Like the unsubscribe routes ``/u/{token}``, they are links in
emails, not API, so they are not in the OpenAPI document.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from guestcomms.domain.clock import utc_now
from guestcomms.errors import NotFoundError
from guestcomms.tracking.recorder import HitRecorder
from guestcomms.tracking.rewrite import PIXEL_GIF
from guestcomms.tracking.service import Hit, Visitor
from guestcomms.tracking.tokens import ClickClaim, OpenClaim, read_click_token, read_open_token

# every fetch must reach us to be counted, and the tracked URLs must not leak onwards
_NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
    "Referrer-Policy": "no-referrer",
}
_FOUND = 302


def routes(*, key: bytes, recorder: HitRecorder) -> list[Route]:
    """The two routes, verifying tokens with ``key`` (``tokens.tracking_key``) and storing
    hits through ``recorder``. ``GET`` only: a ``HEAD`` is a 405, as it was, not an open."""

    async def record(request: Request, claim: OpenClaim | ClickClaim) -> None:
        visitor = Visitor(
            user_agent=request.headers.get("user-agent"),
            ip=request.client.host if request.client else None,
        )
        if await recorder.record(Hit(claim=claim, visitor=visitor, at=utc_now())) is None:
            raise NotFoundError("unknown tracking link")

    async def open_pixel(request: Request) -> Response:
        """The 1x1 transparent GIF; the fetch is recorded as an open of the token's delivery."""
        claim = read_open_token(key, request.path_params["token"])
        if claim is None:
            raise NotFoundError("unknown tracking link")
        await record(request, claim)
        return Response(PIXEL_GIF, media_type="image/gif", headers=_NO_CACHE)

    async def click_redirect(request: Request) -> Response:
        """A 302 to the link's target (the URL signed into the token, and no other); the
        click is recorded first."""
        claim = read_click_token(key, request.path_params["token"])
        if claim is None:
            raise NotFoundError("unknown tracking link")
        await record(request, claim)
        # Location is the signed URL byte for byte (printable ASCII, checked on reading the
        # token); RedirectResponse would quote it again
        return Response(status_code=_FOUND, headers={"Location": claim.url, **_NO_CACHE})

    made = [
        Route("/t/o/{token}.gif", open_pixel, methods=["GET"], include_in_schema=False),
        Route("/t/c/{token}", click_redirect, methods=["GET"], include_in_schema=False),
    ]
    for route in made:
        route.methods = {"GET"}  # Starlette adds HEAD to every GET route
    return made
