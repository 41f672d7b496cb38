"""HTML pages for people: ``GET /outbox``, the operator's view of what the dev outbox kept.

The page shows the newest stored emails of every organization, each as the guest would see
it: the headers, the HTML part inside a sandboxed ``<iframe srcdoc>`` and the text part in a
``<details>``. It is a development tool, so it is not served in production (404 there).

Content written by template authors is untrusted here: Jinja2 autoescaping escapes every
value, including the ``srcdoc`` attribute (quotes too), so an email can neither close the
attribute nor inject markup into the page, and the empty ``sandbox`` attribute denies the
framed email scripts, forms, popups and same-origin access.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from email.utils import format_datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template

from guestcomms.api.deps import RuntimeDep, SessionDep
from guestcomms.config import Environment as Deployment
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.errors import NotFoundError
from guestcomms.outbox.models import OutboxMessage
from guestcomms.outbox.repository import OutboxRepository

TEMPLATES_DIR = Path(__file__).parent / "templates"
DEFAULT_OUTBOX_LIMIT = 50  # emails per page view
MAX_OUTBOX_LIMIT = 500  # each email is an iframe; more would make the page sluggish

# Defence in depth behind the sandbox: a srcdoc frame inherits this policy, so even a
# sandbox bug could not run a script. Styles and images stay allowed so emails look real.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

router = APIRouter(include_in_schema=False)


@functools.cache
def environment() -> Environment:
    """The page templates' Jinja2 environment, built on first use (no I/O at import)."""
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,  # every value is escaped, whatever the template file's name
        undefined=StrictUndefined,
        auto_reload=False,  # packaged files do not change while the process runs
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _template(name: str) -> Template:
    return environment().get_template(name)


@dataclass(frozen=True, slots=True)
class OutboxView:
    """One stored email as the page shows it."""

    id: str
    delivery_id: str
    sender: str
    recipient: str
    subject: str
    date: str  # RFC 5322 form, as a mail client's Date header would read
    message_id: str
    html: str | None
    text: str | None


def outbox_view(row: OutboxMessage) -> OutboxView:
    """The page's view of an outbox row."""
    return OutboxView(
        id=to_public(IdKind.OUTBOX, row.id),
        delivery_id=to_public(IdKind.DELIVERY, row.delivery_id),
        sender=row.sender,
        recipient=row.recipient,
        subject=row.subject,
        date=format_datetime(row.created_at),
        message_id=row.message_id_header,
        html=row.html,
        text=row.text,
    )


@router.get("/outbox", response_class=HTMLResponse)
async def outbox_page(
    runtime: RuntimeDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_OUTBOX_LIMIT)] = DEFAULT_OUTBOX_LIMIT,
) -> HTMLResponse:
    """The newest dev-outbox emails of every organization; 404 in production."""
    if runtime.settings.environment is Deployment.PRODUCTION:
        raise NotFoundError()
    # the operator's tool, not a tenant's: None reads every organization's outbox
    rows = await OutboxRepository(session, None).page(before=None, limit=limit)
    html = _template("outbox.html").render(
        emails=[outbox_view(row) for row in rows],
        limit=limit,
        max_limit=MAX_OUTBOX_LIMIT,
    )
    return HTMLResponse(html, headers=_PAGE_HEADERS)
