"""Template endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from guestcomms.api.deps import CallerDep, RuntimeDep, SessionDep
from guestcomms.api.params import MAX_DB_INT, Limit, body_id, page_size, path_id, split_page
from guestcomms.domain.ids import IdKind
from guestcomms.errors import NotFoundError
from guestcomms.templates.portability import export_templates, import_templates
from guestcomms.templates.preview import preview_composer, preview_template
from guestcomms.templates.repository import TemplateRepository
from guestcomms.templates.schemas import (
    ImportMode,
    PreviewOut,
    TemplateBulk,
    TemplateBulkResult,
    TemplateClone,
    TemplateContent,
    TemplateCreate,
    TemplateExport,
    TemplateImport,
    TemplateImportResult,
    TemplateOut,
    TemplatePage,
    TemplatePatch,
    TemplatePreview,
    TemplateUsage,
    TemplateVersionOut,
)
from guestcomms.templates.service import TemplateService, template_out, version_out

router = APIRouter(prefix="/v1/templates", tags=["templates"])

CategoryQuery = Annotated[
    str | None, Query(min_length=1, max_length=100, description="only templates of this category")
]


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
    category: CategoryQuery = None,
) -> TemplatePage:
    """Templates in creation order, each with its latest version."""
    caller.require("templates:read")
    size = page_size(limit, settings=runtime.settings)
    repo = TemplateRepository(session, caller.organization_id)
    cursor = body_id(IdKind.TEMPLATE, after, field="after") if after else None
    rows, next_cursor = split_page(
        await repo.page(after=cursor, limit=size + 1, category=category),
        size=size,
        kind=IdKind.TEMPLATE,
    )
    latest = await repo.latest_versions(rows)
    return TemplatePage(
        items=[template_out(t, latest.get(t.id)) for t in rows], next_cursor=next_cursor
    )


# Registered before /{template_id}, which would otherwise take "export" for an id.
@router.get("/export", summary="Export templates as JSON")
async def export_template_document(
    session: SessionDep,
    caller: CallerDep,
    category: CategoryQuery = None,
    ids: Annotated[
        list[str] | None,
        Query(description="only these templates (repeat the parameter, or separate by commas)"),
    ] = None,
) -> TemplateExport:
    """A versioned document of the templates (all, one category, or the ids given), with
    every version's content; `POST /v1/templates/import` reads it back."""
    caller.require("templates:read")
    repo = TemplateRepository(session, caller.organization_id)
    keys = None
    if ids is not None:
        texts = [part.strip() for text in ids for part in text.split(",") if part.strip()]
        keys = [body_id(IdKind.TEMPLATE, t, field=f"ids[{i}]") for i, t in enumerate(texts)]
        found = await repo.by_ids(keys)
        for index, key in enumerate(keys):
            if key not in found:
                raise NotFoundError(f"template {texts[index]} not found", field=f"ids[{index}]")
    return await export_templates(repo, category=category, ids=keys)


@router.post("/import", summary="Import templates from JSON")
async def import_template_document(
    body: TemplateImport,
    session: SessionDep,
    caller: CallerDep,
    mode: Annotated[
        ImportMode, Query(description="what to do with a name that exists")
    ] = ImportMode.MERGE,
) -> TemplateImportResult:
    """Import an export document in one transaction. Every version is checked as when it is
    saved (an unknown variable is a 422 naming the template, the version and the variable).
    A new name is created with all its versions; an existing one gets the document's latest
    version if its content differs (`merge`), always (`new_version`), or never (`skip`)."""
    caller.require("templates:write")
    async with session.begin():
        items = await import_templates(
            TemplateRepository(session, caller.organization_id), body, mode=mode
        )
    return TemplateImportResult(items=items)


@router.post("/bulk", summary="Create, update and delete templates at once")
async def bulk_templates(
    body: TemplateBulk, session: SessionDep, caller: CallerDep
) -> TemplateBulkResult:
    """Deletes, then updates, then creates, in one transaction: all of them or none. An
    error names its item (`create[3].html`, `update[0].id`, `delete[2]`). A template that
    messages or campaigns have used cannot be deleted (409)."""
    caller.require("templates:write")
    async with session.begin():
        outcome = await TemplateService(TemplateRepository(session, caller.organization_id)).bulk(
            body
        )
    return TemplateBulkResult(
        created=[template_out(t, v) for t, v in outcome.created],
        updated=[template_out(t, v) for t, v in outcome.updated],
        deleted=outcome.deleted,
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


@router.patch("/{template_id}", summary="Update a template")
async def update_template(
    template_id: str, body: TemplatePatch, session: SessionDep, caller: CallerDep
) -> TemplateOut:
    """Rename it, change its `category` (`null` clears it), and/or give new `content`, which
    becomes a new immutable version."""
    caller.require("templates:write")
    key = path_id(IdKind.TEMPLATE, template_id, what="template")
    async with session.begin():
        template, latest = await TemplateService(
            TemplateRepository(session, caller.organization_id)
        ).update(key, body)
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
    template_id: str,
    # a version number fits the database's integer column (bigger ones overflowed: a 500)
    number: Annotated[int, Path(ge=1, le=MAX_DB_INT)],
    session: SessionDep,
    caller: CallerDep,
) -> TemplateVersionOut:
    """Version ``number`` of the template."""
    caller.require("templates:read")
    key = path_id(IdKind.TEMPLATE, template_id, what="template")
    version = await TemplateRepository(session, caller.organization_id).version(key, number)
    if version is None:
        raise NotFoundError("template version not found")
    return version_out(version)


@router.post(
    "/{template_id}/clone", status_code=status.HTTP_201_CREATED, summary="Clone a template"
)
async def clone_template(
    template_id: str,
    body: TemplateClone,
    session: SessionDep,
    caller: CallerDep,
    version: Annotated[
        int | None, Query(ge=1, le=MAX_DB_INT, description="default: the latest")
    ] = None,
) -> TemplateOut:
    """A new template whose version 1 is a copy of this one's latest version (or
    `?version=N`), on the same channel, in the same category unless `category` is given."""
    caller.require("templates:write")
    key = path_id(IdKind.TEMPLATE, template_id, what="template")
    async with session.begin():
        template, first = await TemplateService(
            TemplateRepository(session, caller.organization_id)
        ).clone(key, body, version=version)
    return template_out(template, first)


@router.get("/{template_id}/usage", summary="Deliveries produced by each version")
async def template_usage(template_id: str, session: SessionDep, caller: CallerDep) -> TemplateUsage:
    """For each version: how many deliveries it produced and how many are in each status
    now (`sent`, `delivered`, `failed`...)."""
    caller.require("templates:read")
    key = path_id(IdKind.TEMPLATE, template_id, what="template")
    return await TemplateService(TemplateRepository(session, caller.organization_id)).usage(key)


@router.post("/{template_id}/preview", summary="Render a template for a contact")
async def preview_template_for_contact(
    template_id: str,
    body: TemplatePreview,
    session: SessionDep,
    caller: CallerDep,
    runtime: RuntimeDep,
) -> PreviewOut:
    """What the worker would send this contact: the same locale variant, formatting locale,
    channel and rendering, with `variables` as a message would give them. Nothing is sent
    or stored. A contact of another organization is a 422 naming `contact_id`."""
    caller.require("templates:read")
    caller.require("contacts:read")
    key = path_id(IdKind.TEMPLATE, template_id, what="template")
    return await preview_template(
        session,
        organization_id=caller.organization_id,
        template_id=key,
        data=body,
        composer=preview_composer(runtime.settings),
    )
