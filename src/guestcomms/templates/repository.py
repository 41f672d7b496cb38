"""Every template query, scoped to one organization."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.templates.models import Template, TemplateVersion


class TemplateRepository:
    """Reads and writes the templates of ``organization_id`` only."""

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID) -> None:
        self._session = session
        self._org = organization_id

    async def get(self, template_id: uuid.UUID, *, for_update: bool = False) -> Template | None:
        """The template, or ``None``."""
        stmt = select(Template).where(
            Template.id == template_id, Template.organization_id == self._org
        )
        if for_update:
            stmt = stmt.with_for_update()
        return await self._session.scalar(stmt)

    async def by_name(self, name: str) -> Template | None:
        """The template called ``name``, or ``None``."""
        return await self._session.scalar(
            select(Template).where(Template.organization_id == self._org, Template.name == name)
        )

    async def page(self, *, after: uuid.UUID | None, limit: int) -> Sequence[Template]:
        """Templates in creation order after ``after``."""
        stmt = select(Template).where(Template.organization_id == self._org)
        if after is not None:
            stmt = stmt.where(Template.id > after)
        return (await self._session.scalars(stmt.order_by(Template.id).limit(limit))).all()

    async def version(self, template_id: uuid.UUID, number: int) -> TemplateVersion | None:
        """Version ``number`` of the template, or ``None``."""
        return await self._session.scalar(
            select(TemplateVersion).where(
                TemplateVersion.organization_id == self._org,
                TemplateVersion.template_id == template_id,
                TemplateVersion.version == number,
            )
        )

    async def version_by_id(self, version_id: uuid.UUID) -> TemplateVersion | None:
        """The version with this key, or ``None``."""
        return await self._session.scalar(
            select(TemplateVersion).where(
                TemplateVersion.organization_id == self._org, TemplateVersion.id == version_id
            )
        )

    async def latest_versions(
        self, templates: Sequence[Template]
    ) -> dict[uuid.UUID, TemplateVersion]:
        """The latest version of each template, keyed by template id."""
        if not templates:
            return {}
        wanted = {(t.id, t.latest_version) for t in templates}
        rows = await self._session.scalars(
            select(TemplateVersion).where(
                TemplateVersion.organization_id == self._org,
                TemplateVersion.template_id.in_([t.id for t in templates]),
            )
        )
        return {v.template_id: v for v in rows if (v.template_id, v.version) in wanted}

    async def add(self, template: Template) -> None:
        """Insert a template."""
        template.organization_id = self._org
        self._session.add(template)
        await self._session.flush()

    async def add_version(self, version: TemplateVersion) -> None:
        """Insert a version."""
        version.organization_id = self._org
        self._session.add(version)
        await self._session.flush()
