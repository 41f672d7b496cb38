"""Template logic: content is validated when saved, never when the 10,000th email renders."""

from __future__ import annotations

import uuid

from guestcomms.domain.ids import IdKind, to_public
from guestcomms.errors import ConflictError, NotFoundError
from guestcomms.templates.models import Template, TemplateVersion
from guestcomms.templates.repository import TemplateRepository
from guestcomms.templates.sandbox import validate_template
from guestcomms.templates.schemas import (
    TemplateContent,
    TemplateCreate,
    TemplateOut,
    TemplateVersionOut,
)


def version_out(version: TemplateVersion) -> TemplateVersionOut:
    """The API view of a version."""
    return TemplateVersionOut(
        id=to_public(IdKind.TEMPLATE_VERSION, version.id),
        version=version.version,
        subject=version.subject,
        html=version.html,
        text=version.text,
        variables=list(version.variables or []),
        created_at=version.created_at,
    )


def template_out(template: Template, latest: TemplateVersion | None) -> TemplateOut:
    """The API view of a template with its latest version."""
    return TemplateOut(
        id=to_public(IdKind.TEMPLATE, template.id),
        name=template.name,
        channel=template.channel,
        latest_version=template.latest_version,
        created_at=template.created_at,
        latest=version_out(latest) if latest else None,
    )


class TemplateService:
    """Template use cases for one organization."""

    def __init__(self, repo: TemplateRepository) -> None:
        self._repo = repo

    async def create(self, data: TemplateCreate) -> tuple[Template, TemplateVersion]:
        """Create a template with version 1; ``ConflictError`` if the name is taken."""
        _validate(data)
        if await self._repo.by_name(data.name):
            raise ConflictError(f"a template named {data.name!r} exists", field="name")
        template = Template(name=data.name, channel=data.channel.value, latest_version=0)
        await self._repo.add(template)
        version = await self._append(template, data)
        return template, version

    async def add_version(
        self, template_id: uuid.UUID, data: TemplateContent
    ) -> tuple[Template, TemplateVersion]:
        """Append an immutable version; earlier versions stay as they were."""
        _validate(data)
        template = await self._repo.get(template_id, for_update=True)
        if template is None:
            raise NotFoundError("template not found")
        return template, await self._append(template, data)

    async def _append(self, template: Template, data: TemplateContent) -> TemplateVersion:
        template.latest_version += 1
        version = TemplateVersion(
            template_id=template.id,
            version=template.latest_version,
            subject=data.subject,
            html=data.html,
            text=data.text,
            variables=list(data.variables),
        )
        await self._repo.add_version(version)
        return version

    async def get(self, template_id: uuid.UUID) -> tuple[Template, TemplateVersion | None]:
        """The template and its latest version; ``NotFoundError`` if not this organization's."""
        template = await self._repo.get(template_id)
        if template is None:
            raise NotFoundError("template not found")
        return template, await self._repo.version(template.id, template.latest_version)


def _validate(data: TemplateContent) -> None:
    validate_template(
        subject=data.subject, html=data.html, text=data.text, variables=data.variables
    )
