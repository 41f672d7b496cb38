"""Every template query, scoped to one organization."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence

from sqlalchemy import delete, func, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.campaigns.models import Campaign
from guestcomms.messages.models import Delivery, Message
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

    async def page(
        self, *, after: uuid.UUID | None, limit: int, category: str | None = None
    ) -> Sequence[Template]:
        """Templates in creation order after ``after``, only those of ``category`` if given."""
        stmt = select(Template).where(Template.organization_id == self._org)
        if category is not None:
            stmt = stmt.where(Template.category == category)
        if after is not None:
            stmt = stmt.where(Template.id > after)
        return (await self._session.scalars(stmt.order_by(Template.id).limit(limit))).all()

    async def by_ids(
        self, ids: Collection[uuid.UUID], *, for_update: bool = False
    ) -> dict[uuid.UUID, Template]:
        """The templates among ``ids`` that are this organization's, by id."""
        if not ids:
            return {}
        stmt = select(Template).where(Template.organization_id == self._org, Template.id.in_(ids))
        if for_update:
            stmt = stmt.with_for_update()
        return {t.id: t for t in await self._session.scalars(stmt)}

    async def by_names(
        self, names: Collection[str], *, for_update: bool = False
    ) -> dict[str, Template]:
        """The templates called one of ``names``, by name."""
        if not names:
            return {}
        stmt = select(Template).where(
            Template.organization_id == self._org, Template.name.in_(names)
        )
        if for_update:
            stmt = stmt.with_for_update()
        return {t.name: t for t in await self._session.scalars(stmt)}

    async def version_numbers(self, template_id: uuid.UUID) -> list[tuple[uuid.UUID, int]]:
        """(id, number) of every version of the template, oldest first."""
        rows = await self._session.execute(
            select(TemplateVersion.id, TemplateVersion.version)
            .where(
                TemplateVersion.organization_id == self._org,
                TemplateVersion.template_id == template_id,
            )
            .order_by(TemplateVersion.version)
        )
        return [(row.id, row.version) for row in rows]

    async def for_export(
        self, *, category: str | None, ids: Collection[uuid.UUID] | None
    ) -> tuple[Sequence[Template], Sequence[TemplateVersion]]:
        """The templates to export (by name) and all their versions (by template, number)."""
        chosen = select(Template.id).where(Template.organization_id == self._org)
        if category is not None:
            chosen = chosen.where(Template.category == category)
        if ids is not None:
            chosen = chosen.where(Template.id.in_(ids))
        templates = await self._session.scalars(
            select(Template).where(Template.id.in_(chosen)).order_by(Template.name)
        )
        versions = await self._session.scalars(
            select(TemplateVersion)
            .where(
                TemplateVersion.organization_id == self._org,
                TemplateVersion.template_id.in_(chosen),
            )
            .order_by(TemplateVersion.template_id, TemplateVersion.version)
        )
        return templates.all(), versions.all()

    async def in_use(self, ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        """The templates among ``ids`` that a message or a campaign refers to (those rows keep
        the template: a delivery's history names the version it used)."""
        if not ids:
            return set()
        by_messages = select(Message.template_id).where(
            Message.organization_id == self._org, Message.template_id.in_(ids)
        )
        by_campaigns = select(Campaign.template_id).where(
            Campaign.organization_id == self._org, Campaign.template_id.in_(ids)
        )
        rows = await self._session.scalars(union(by_messages, by_campaigns))
        return set(rows)

    async def delete(self, ids: Collection[uuid.UUID]) -> None:
        """Delete the templates (their versions go with them, by the foreign key's cascade)."""
        if ids:
            await self._session.execute(
                delete(Template)
                .where(Template.organization_id == self._org, Template.id.in_(ids))
                .execution_options(synchronize_session=False)
            )

    async def usage(self, template_id: uuid.UUID) -> list[tuple[uuid.UUID, str, int]]:
        """(version id, status, deliveries) for every delivery of the template's messages.

        One grouped query. It walks the template's messages, then their deliveries through
        ``ix_deliveries_message``, rather than scanning the organization's deliveries for a
        ``template_version_id`` (which has no index: an index there would cost every
        fan-out insert). Grouping by the delivery's own version keeps the count right for
        deliveries that record another version than their message.
        """
        rows = await self._session.execute(
            select(Delivery.template_version_id, Delivery.status, func.count())
            .select_from(Message)
            .join(Delivery, Delivery.message_id == Message.id)
            .where(Message.organization_id == self._org, Message.template_id == template_id)
            .group_by(Delivery.template_version_id, Delivery.status)
        )
        return [(row[0], row[1], row[2]) for row in rows]

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
