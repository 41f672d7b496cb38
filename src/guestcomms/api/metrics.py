"""``GET /metrics``: this process's Prometheus metrics, with the queue read at scrape time.

Not an API-key route: a scraper is the operator's, not a tenant's, and the numbers span every
organization. With ``metrics_token`` set it needs ``Authorization: Bearer <token>`` (401
otherwise); unset, it is open, for a scraper on a private network. It is left out of the
OpenAPI document (it is not part of the tenant API). See docs/operations.md "Metrics".
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from guestcomms.api.deps import RuntimeDep
from guestcomms.domain.clock import utc_now
from guestcomms.engine.metrics import bearer_ok, read_queue
from guestcomms.errors import AuthenticationError

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics(
    runtime: RuntimeDep, authorization: Annotated[str | None, Header()] = None
) -> Response:
    """The text exposition format; 401 (problem+json) without the metrics token when one is
    set. Reads the queue's depth and age first (two queries over all organizations)."""
    token = runtime.settings.metrics_token
    if not bearer_ok(authorization, token.get_secret_value() if token else None):
        raise AuthenticationError("the metrics token is required: Authorization: Bearer ...")
    async with runtime.sessions() as session:
        snapshot = await read_queue(session, now=utc_now())
    runtime.metrics.refresh_queue(snapshot)
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
