"""Template endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from guestcomms.api.deps import CallerDep, RuntimeDep, SessionDep
from guestcomms.api.params import Limit, body_id, page_size, path_id, split_page
from guestcomms.domain.ids import IdKind
from guestcomms.errors import NotFoundError
from guestcomms.templates.repository import TemplateRepository
from guestcomms.templates.schemas import (
    TemplateContent,
    TemplateCreate,
    TemplateOut,
    TemplatePage,
    TemplateVersionOut,
)
from guestcomms.templates.service import TemplateService, template_out, version_out

router = APIRouter(prefix="/v1/templates", tags=["templates"])


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a template")
async def create_template(
    body: TemplateCreate, session: SessionDep, caller: CallerDep
) -> TemplateOut:
    """Create a template and its version 1. The content is checked now: a syntax error or a
    variable that is neither a contact field nor declared in `variables` is a 422 naming it."""
    caller.require("templates:write")
    async with session.begin():
        template, version = await TemplateService(
            TemplateRepository(session, caller.organization_id)
        ).create(body)
    return template_out(template, version)


@router.get("", summary="List templates")
async def list_templates(
    session: SessionDep,
    caller: CallerDep,
    runtime: RuntimeDep,
    limit: Limit = None,
    after: Annotated[str | None, Query(description="cursor from the previous page")] = None,
) -> TemplatePage:
    """Templates in creation order, each with its latest version."""
    caller.require("templates:read")
    size = page_size(limit, settings=runtime.settings)
    repo = TemplateRepository(session, caller.organization_id)
    cursor = body_id(IdKind.TEMPLATE, after, field="after") if after else None
    rows, next_cursor = split_page(
        await repo.page(after=cursor, limit=size + 1), size=size, kind=IdKind.TEMPLATE
    )
    latest = await repo.latest_versions(rows)
    return TemplatePage(
        items=[template_out(t, latest.get(t.id)) for t in rows], next_cursor=next_cursor
    )


@router.get("/{template_id}", summary="Get a template")
async def get_template(template_id: str, session: SessionDep, caller: CallerDep) -> TemplateOut:
    """A template with its latest version."""
    caller.require("templates:read")
    key = path_id(IdKind.TEMPLATE, template_id, what="template")
    template, latest = await TemplateService(
        TemplateRepository(session, caller.organization_id)
    ).get(key)
    return template_out(template, latest)


@router.post(
    "/{template_id}/versions", status_code=status.HTTP_201_CREATED, summary="Add a version"
)
async def create_version(
    template_id: str, body: TemplateContent, session: SessionDep, caller: CallerDep
) -> TemplateVersionOut:
    """Append a new immutable version; messages created afterwards use it."""
    caller.require("templates:write")
    key = path_id(IdKind.TEMPLATE, template_id, what="template")
    async with session.begin():
        _, version = await TemplateService(
            TemplateRepository(session, caller.organization_id)
        ).add_version(key, body)
    return version_out(version)


@router.get("/{template_id}/versions/{number}", summary="Get one version")
async def get_version(
    template_id: str, number: int, session: SessionDep, caller: CallerDep
) -> TemplateVersionOut:
    """Version ``number`` of the template."""
    caller.require("templates:read")
    key = path_id(IdKind.TEMPLATE, template_id, what="template")
    version = await TemplateRepository(session, caller.organization_id).version(key, number)
    if version is None:
        raise NotFoundError("template version not found")
    return version_out(version)
