"""Export templates as a versioned JSON document, and import such a document.

The document (``TemplateExport``) holds no ids, only names, so it can move between
organizations and installations: ``format`` and ``format_version`` say what it is, then each
template's name, channel, category and every version's content (locale variants included),
oldest first. Importing an export into an organization that has none of its names
reproduces the same templates, version for version.

Import checks every version exactly as saving one does, before writing anything; an error
names the template, the version and the variable (field ``templates[i].versions[j].html``).
A name that exists is handled by the mode: ``merge`` (the default) appends the document's
latest version when its content differs from the existing latest and does nothing when it
is the same; ``new_version`` always appends it; ``skip`` leaves the template alone. An
existing template keeps its own category. The caller's transaction makes it all or nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

from guestcomms.domain.clock import utc_now
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.errors import ConflictError, GuestcommsError, ValidationFailedError
from guestcomms.templates.models import Template
from guestcomms.templates.repository import TemplateRepository
from guestcomms.templates.schemas import (
    ExportedTemplate,
    ExportedVersion,
    ImportAction,
    ImportedItem,
    ImportedTemplate,
    ImportMode,
    TemplateExport,
    TemplateImport,
)
from guestcomms.templates.service import (
    TemplateService,
    content_of,
    locate,
    stored_content,
    validate_content,
)


async def export_templates(
    repo: TemplateRepository, *, category: str | None, ids: Collection[uuid.UUID] | None
) -> TemplateExport:
    """The organization's templates (of ``category``, among ``ids``; all by default), by
    name, each with every version."""
    templates, versions = await repo.for_export(category=category, ids=ids)
    by_template: dict[uuid.UUID, list[ExportedVersion]] = {t.id: [] for t in templates}
    for version in versions:
        by_template[version.template_id].append(
            ExportedVersion(version=version.version, **content_of(version))
        )
    return TemplateExport(
        exported_at=utc_now(),
        templates=[
            ExportedTemplate(
                name=t.name, channel=t.channel, category=t.category, versions=by_template[t.id]
            )
            for t in templates
        ],
    )


async def import_templates(
    repo: TemplateRepository, document: TemplateImport, *, mode: ImportMode
) -> list[ImportedItem]:
    """Import ``document``; one item per template, in document order. Raises
    ``TemplateError`` for invalid content, ``ValidationFailedError`` for a name given twice,
    ``ConflictError`` for an existing name on another channel."""
    _check(document)
    existing = await repo.by_names([t.name for t in document.templates], for_update=True)
    service = TemplateService(repo)
    items = []
    for index, imported in enumerate(document.templates):
        template = existing.get(imported.name)
        if template is None:
            template = Template(
                name=imported.name,
                channel=imported.channel.value,
                category=imported.category,
                latest_version=0,
            )
            await repo.add(template)
            for version in imported.versions:
                await service.append(template, version)
            action = ImportAction.CREATED
        else:
            action = await _merge(service, repo, template, imported, index=index, mode=mode)
        items.append(
            ImportedItem(
                name=template.name,
                id=to_public(IdKind.TEMPLATE, template.id),
                action=action,
                latest_version=template.latest_version,
            )
        )
    return items


def _check(document: TemplateImport) -> None:
    """Check the whole document before anything is written."""
    names: dict[str, int] = {}
    for index, imported in enumerate(document.templates):
        if imported.name in names:
            raise ValidationFailedError(
                f"template {imported.name!r} is also templates[{names[imported.name]}]",
                field=f"templates[{index}].name",
            )
        names[imported.name] = index
        numbers = [v.version for v in imported.versions if v.version is not None]
        if numbers != sorted(set(numbers)):
            raise ValidationFailedError(
                f"the versions of template {imported.name!r} are not in increasing order",
                field=f"templates[{index}].versions",
            )
        for position, version in enumerate(imported.versions):
            try:
                validate_content(version, channel=imported.channel.value)
            except GuestcommsError as e:
                number = version.version or position + 1
                raise locate(
                    e,
                    f"templates[{index}].versions[{position}]",
                    what=f"template {imported.name!r} version {number}",
                ) from None


async def _merge(
    service: TemplateService,
    repo: TemplateRepository,
    template: Template,
    imported: ImportedTemplate,
    *,
    index: int,
    mode: ImportMode,
) -> ImportAction:
    if template.channel != imported.channel.value:
        raise ConflictError(
            f"template {template.name!r} exists on {template.channel}, "
            f"the document's is on {imported.channel.value}",
            field=f"templates[{index}].channel",
        )
    if mode == ImportMode.SKIP:
        return ImportAction.SKIPPED
    newest = imported.versions[-1]
    if mode == ImportMode.MERGE:
        latest = await repo.version(template.id, template.latest_version)
        if latest is not None and content_of(latest) == stored_content(newest):
            return ImportAction.UNCHANGED
    await service.append(template, newest)
    return ImportAction.NEW_VERSION
