"""Template logic: content is validated when saved, never when the 10,000th email renders."""

from __future__ import annotations

import uuid

from guestcomms.domain.enums import Channel
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.errors import ConflictError, NotFoundError, TemplateError
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
        channel_content=dict(version.channel_content or {}),
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
        _validate(data, channel=data.channel.value)
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
        template = await self._repo.get(template_id, for_update=True)
        if template is None:
            raise NotFoundError("template not found")
        _validate(data, channel=template.channel)
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
            channel_content=(
                data.channel_content.model_dump(exclude_none=True) if data.channel_content else {}
            ),
        )
        await self._repo.add_version(version)
        return version

    async def get(self, template_id: uuid.UUID) -> tuple[Template, TemplateVersion | None]:
        """The template and its latest version; ``NotFoundError`` if not this organization's."""
        template = await self._repo.get(template_id)
        if template is None:
            raise NotFoundError("template not found")
        return template, await self._repo.version(template.id, template.latest_version)


def _validate(data: TemplateContent, *, channel: str) -> None:
    """Check every part at save time; the field of an error names the part at fault."""
    has_email = any(part is not None for part in (data.subject, data.html, data.text))
    if channel == Channel.EMAIL or has_email:
        validate_template(
            subject=data.subject, html=data.html, text=data.text, variables=data.variables
        )
    parts = data.channel_content.model_dump(exclude_none=True) if data.channel_content else {}
    if channel != Channel.EMAIL and channel not in parts:
        raise TemplateError(
            f"a {channel} template needs channel_content.{channel}",
            field=f"channel_content.{channel}",
        )
    for name, fields in parts.items():
        for key, source in fields.items():
            if not isinstance(source, str):
                continue
            try:
                validate_template(
                    subject=None, html=None, text=source, variables=data.variables, channel=name
                )
            except TemplateError as e:
                raise TemplateError(
                    e.message, field=f"channel_content.{name}.{key}", line=e.line
                ) from e


def channels_covered(version: TemplateVersion) -> set[str]:
    """The channels a version has content for."""
    covered = set(version.channel_content or {})
    if version.subject and (version.html or version.text):
        covered.add(Channel.EMAIL.value)
    return covered
