"""Template logic: content is validated when saved, never when the 10,000th email renders.

``TemplateService`` creates, changes, clones and deletes templates (one at a time or in a
bulk request that applies entirely or not at all) and counts what each version produced.
Export and import live in ``templates.portability``; the render preview in
``templates.preview``. Services never commit: the route owns the transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from guestcomms.domain.enums import Channel
from guestcomms.domain.ids import IdKind, InvalidIdError, from_public, to_public
from guestcomms.errors import (
    ConflictError,
    GuestcommsError,
    NotFoundError,
    TemplateError,
    ValidationFailedError,
)
from guestcomms.templates.i18n import normalize_tag
from guestcomms.templates.models import Template, TemplateVersion
from guestcomms.templates.repository import TemplateRepository
from guestcomms.templates.sandbox import validate_template
from guestcomms.templates.schemas import (
    LocaleContent,
    TemplateBulk,
    TemplateClone,
    TemplateContent,
    TemplateCreate,
    TemplateOut,
    TemplatePatch,
    TemplateUsage,
    TemplateVersionOut,
    VersionUsage,
)

T = TypeVar("T")


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
        locales=dict(version.locales or {}),
        created_at=version.created_at,
    )


def template_out(template: Template, latest: TemplateVersion | None) -> TemplateOut:
    """The API view of a template with its latest version."""
    return TemplateOut(
        id=to_public(IdKind.TEMPLATE, template.id),
        name=template.name,
        channel=template.channel,
        category=template.category,
        latest_version=template.latest_version,
        created_at=template.created_at,
        latest=version_out(latest) if latest else None,
    )


def stored_content(data: TemplateContent) -> dict[str, Any]:
    """The columns a version of ``data`` stores (locale tags in canonical form). Call after
    :func:`validate_content`; also used to compare imported content with a stored version."""
    return {
        "subject": data.subject,
        "html": data.html,
        "text": data.text,
        "variables": list(data.variables),
        "channel_content": _dump(data.channel_content),
        "locales": {
            normalize_tag(tag): _locale_dump(variant)
            for tag, variant in (data.locales or {}).items()
        },
    }


def content_of(version: TemplateVersion) -> dict[str, Any]:
    """A stored version's content, in the shape of :func:`stored_content`."""
    return {
        "subject": version.subject,
        "html": version.html,
        "text": version.text,
        "variables": list(version.variables or []),
        "channel_content": dict(version.channel_content or {}),
        "locales": dict(version.locales or {}),
    }


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    """What a bulk request did: templates created and updated (with their latest version),
    and the public ids deleted."""

    created: list[tuple[Template, TemplateVersion]]
    updated: list[tuple[Template, TemplateVersion | None]]
    deleted: list[str]


class TemplateService:
    """Template use cases for one organization."""

    def __init__(self, repo: TemplateRepository) -> None:
        self._repo = repo

    async def create(self, data: TemplateCreate) -> tuple[Template, TemplateVersion]:
        """Create a template with version 1; ``ConflictError`` if the name is taken."""
        validate_content(data, channel=data.channel.value)
        if await self._repo.by_name(data.name):
            raise ConflictError(f"a template named {data.name!r} exists", field="name")
        return await self._insert(data)

    async def _insert(self, data: TemplateCreate) -> tuple[Template, TemplateVersion]:
        template = Template(
            name=data.name, channel=data.channel.value, category=data.category, latest_version=0
        )
        await self._repo.add(template)
        return template, await self.append(template, data)

    async def add_version(
        self, template_id: uuid.UUID, data: TemplateContent
    ) -> tuple[Template, TemplateVersion]:
        """Append an immutable version; earlier versions stay as they were."""
        template = await self._repo.get(template_id, for_update=True)
        if template is None:
            raise NotFoundError("template not found")
        validate_content(data, channel=template.channel)
        return template, await self.append(template, data)

    async def append(self, template: Template, data: TemplateContent) -> TemplateVersion:
        """Append ``data`` (already validated) as the template's next version."""
        template.latest_version += 1
        version = TemplateVersion(
            template_id=template.id, version=template.latest_version, **stored_content(data)
        )
        await self._repo.add_version(version)
        return version

    async def get(self, template_id: uuid.UUID) -> tuple[Template, TemplateVersion | None]:
        """The template and its latest version; ``NotFoundError`` if not this organization's."""
        template = await self._repo.get(template_id)
        if template is None:
            raise NotFoundError("template not found")
        return template, await self._repo.version(template.id, template.latest_version)

    async def update(
        self, template_id: uuid.UUID, data: TemplatePatch
    ) -> tuple[Template, TemplateVersion | None]:
        """Rename, re-categorise and/or add a version. ``NotFoundError``, ``ConflictError``
        (the new name is taken), ``TemplateError`` (the content)."""
        template = await self._repo.get(template_id, for_update=True)
        if template is None:
            raise NotFoundError("template not found")
        new_name = data.name if data.name != template.name else None
        if new_name is not None and await self._repo.by_name(new_name):
            raise ConflictError(f"a template named {new_name!r} exists", field="name")
        return await self._patch(template, data)

    async def _patch(
        self, template: Template, data: TemplatePatch
    ) -> tuple[Template, TemplateVersion | None]:
        if data.content is not None:
            _located("content", validate_content, data.content, channel=template.channel)
        if data.name is not None:
            template.name = data.name
        if "category" in data.model_fields_set:
            template.category = data.category
        if data.content is not None:
            return template, await self.append(template, data.content)
        return template, await self._repo.version(template.id, template.latest_version)

    async def clone(
        self, template_id: uuid.UUID, data: TemplateClone, *, version: int | None
    ) -> tuple[Template, TemplateVersion]:
        """A new template named ``data.name`` whose version 1 is a copy of the source's
        ``version`` (default: its latest). The category is the source's unless given."""
        source = await self._repo.get(template_id)
        if source is None:
            raise NotFoundError("template not found")
        number = source.latest_version if version is None else version
        original = await self._repo.version(source.id, number)
        if original is None:
            raise NotFoundError(f"the template has no version {number}", field="version")
        if await self._repo.by_name(data.name):
            raise ConflictError(f"a template named {data.name!r} exists", field="name")
        category = data.category if "category" in data.model_fields_set else source.category
        template = Template(
            name=data.name, channel=source.channel, category=category, latest_version=1
        )
        await self._repo.add(template)
        # versions are immutable and were checked when saved: the copy is taken as it is
        copy = TemplateVersion(template_id=template.id, version=1, **content_of(original))
        await self._repo.add_version(copy)
        return template, copy

    async def usage(self, template_id: uuid.UUID) -> TemplateUsage:
        """Deliveries each version produced, by status now; versions never used count 0."""
        template = await self._repo.get(template_id)
        if template is None:
            raise NotFoundError("template not found")
        numbers = await self._repo.version_numbers(template.id)
        counts: dict[uuid.UUID, dict[str, int]] = {version_id: {} for version_id, _ in numbers}
        for version_id, status, count in await self._repo.usage(template.id):
            if version_id in counts:
                counts[version_id][status] = counts[version_id].get(status, 0) + count
        versions = [
            VersionUsage(
                version=number,
                id=to_public(IdKind.TEMPLATE_VERSION, version_id),
                deliveries=sum(counts[version_id].values()),
                by_status=dict(sorted(counts[version_id].items())),
            )
            for version_id, number in numbers
        ]
        return TemplateUsage(
            template_id=to_public(IdKind.TEMPLATE, template.id),
            name=template.name,
            deliveries=sum(v.deliveries for v in versions),
            versions=versions,
        )

    async def bulk(self, data: TemplateBulk) -> BulkOutcome:
        """Apply deletes, then updates, then creates. Any error names its item
        (``create[3].html``, ``update[0].id``, ``delete[2]``) and, since the caller's
        transaction then rolls back, nothing of the request is applied."""
        for index, item in enumerate(data.create):
            _located(f"create[{index}]", validate_content, item, channel=item.channel.value)
        delete_ids = _parse_ids(data.delete, field="delete[{}]")
        update_ids = _parse_ids([u.id for u in data.update], field="update[{}].id")
        for index, key in enumerate(update_ids):
            if key in delete_ids:
                raise ValidationFailedError(
                    "this template is also deleted in the same request", field=f"update[{index}].id"
                )
        found = await self._repo.by_ids([*delete_ids, *update_ids], for_update=True)
        for ids, field in ((delete_ids, "delete[{}]"), (update_ids, "update[{}].id")):
            for index, key in enumerate(ids):
                if key not in found:
                    raise ValidationFailedError(
                        f"unknown template {to_public(IdKind.TEMPLATE, key)}",
                        field=field.format(index),
                    )
        used = await self._repo.in_use(delete_ids)
        for index, key in enumerate(delete_ids):
            if key in used:
                raise ConflictError(
                    f"template {found[key].name!r} has been used by messages or campaigns, "
                    "whose history names its versions: it cannot be deleted",
                    field=f"delete[{index}]",
                )
        names = _Names(await self._repo.by_names(_wanted_names(data)))
        await self._repo.delete(delete_ids)
        names.release(found[key] for key in delete_ids)
        updated = []
        for index, (key, change) in enumerate(zip(update_ids, data.update, strict=True)):
            template = found[key]
            if change.name is not None:
                names.claim(change.name, template, field=f"update[{index}].name")
            updated.append(await _at(f"update[{index}]", self._patch(template, change)))
        created = []
        for index, new in enumerate(data.create):
            names.claim(new.name, None, field=f"create[{index}].name")
            created.append(await self._insert(new))
        return BulkOutcome(
            created=created,
            updated=updated,
            deleted=[to_public(IdKind.TEMPLATE, key) for key in delete_ids],
        )


class _Names:
    """The names taken while a bulk request is applied, so clashes name their item."""

    def __init__(self, taken: dict[str, Template]) -> None:
        self._holder: dict[str, uuid.UUID] = {name: t.id for name, t in taken.items()}

    def release(self, templates: Iterable[Template]) -> None:
        for template in templates:
            self._holder.pop(template.name, None)

    def claim(self, name: str, template: Template | None, *, field: str) -> None:
        holder = self._holder.get(name)
        if holder is not None and (template is None or holder != template.id):
            raise ConflictError(f"a template named {name!r} exists", field=field)
        if template is not None:
            self._holder.pop(template.name, None)
            self._holder[name] = template.id
        else:
            self._holder[name] = uuid.UUID(int=0)  # a template created by this request


def _wanted_names(data: TemplateBulk) -> set[str]:
    return {item.name for item in data.create} | {
        item.name for item in data.update if item.name is not None
    }


def _parse_ids(texts: Sequence[str], *, field: str) -> list[uuid.UUID]:
    keys: list[uuid.UUID] = []
    for index, text in enumerate(texts):
        try:
            key = from_public(IdKind.TEMPLATE, text)
        except InvalidIdError as e:
            raise ValidationFailedError(str(e), field=field.format(index)) from e
        if key in keys:
            raise ValidationFailedError("this template is listed twice", field=field.format(index))
        keys.append(key)
    return keys


def locate(error: GuestcommsError, prefix: str, *, what: str | None = None) -> GuestcommsError:
    """``error`` with its field under ``prefix`` (``html`` -> ``create[3].html``) and its
    message prefixed with ``what`` (or ``prefix``), so the client knows which item failed."""
    error.field = f"{prefix}.{error.field}" if error.field else prefix
    error.message = f"{what or prefix}: {error.message}"
    error.args = (error.message,)
    return error


def _located(prefix: str, check: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    try:
        check(*args, **kwargs)
    except GuestcommsError as e:
        raise locate(e, prefix) from None


async def _at(prefix: str, work: Awaitable[T]) -> T:
    try:
        return await work
    except GuestcommsError as e:
        raise locate(e, prefix) from None


# --- validation --------------------------------------------------------------------------


def validate_content(data: TemplateContent, *, channel: str) -> None:
    """Check every part and every locale variant, as when a version is saved. Raises
    ``TemplateError`` whose field names the part at fault (``html``,
    ``channel_content.sms.body``, ``locales.fr.subject``) and whose message names the
    variable, filter or line."""
    has_email = any(part is not None for part in (data.subject, data.html, data.text))
    if channel == Channel.EMAIL or has_email:
        validate_template(
            subject=data.subject, html=data.html, text=data.text, variables=data.variables
        )
    parts = _dump(data.channel_content)
    if channel != Channel.EMAIL and channel not in parts:
        raise TemplateError(
            f"a {channel} template needs channel_content.{channel}",
            field=f"channel_content.{channel}",
        )
    _validate_parts(parts, variables=data.variables, prefix="channel_content")
    base_channels = set(parts) | ({Channel.EMAIL.value} if has_email else set())
    _validate_locales(data, base_channels=base_channels)


def _validate_parts(
    parts: dict[str, dict[str, Any]], *, variables: Sequence[str], prefix: str
) -> None:
    for name, fields in parts.items():
        for key, source in fields.items():
            if not isinstance(source, str):
                continue
            try:
                validate_template(
                    subject=None, html=None, text=source, variables=variables, channel=name
                )
            except TemplateError as e:
                raise TemplateError(e.message, field=f"{prefix}.{name}.{key}", line=e.line) from e


def _validate_locales(data: TemplateContent, *, base_channels: set[str]) -> None:
    seen: dict[str, str] = {}
    for tag, variant in (data.locales or {}).items():
        prefix = f"locales.{tag}"
        try:
            canonical = normalize_tag(tag)
        except ValueError as e:
            raise TemplateError(str(e), field=prefix) from e
        if canonical in seen:
            raise TemplateError(f"locale {tag!r} is the same as {seen[canonical]!r}", field=prefix)
        seen[canonical] = tag
        parts = _dump(variant.channel_content)
        has_email = any(p is not None for p in (variant.subject, variant.html, variant.text))
        if not has_email and not parts:
            raise TemplateError(f"the {tag!r} variant has no content", field=prefix)
        extra = (set(parts) | ({Channel.EMAIL.value} if has_email else set())) - base_channels
        if extra:
            # a message's channels are checked against the base content: a variant may
            # only translate what the base has
            raise TemplateError(
                f"the {tag!r} variant has {', '.join(sorted(extra))} content the base lacks",
                field=prefix,
            )
        if has_email:
            try:
                validate_template(
                    subject=variant.subject,
                    html=variant.html,
                    text=variant.text,
                    variables=data.variables,
                )
            except TemplateError as e:
                raise TemplateError(e.message, field=f"{prefix}.{e.field}", line=e.line) from e
        _validate_parts(parts, variables=data.variables, prefix=f"{prefix}.channel_content")


def _dump(content: Any) -> dict[str, Any]:
    return content.model_dump(exclude_none=True) if content is not None else {}


def _locale_dump(variant: LocaleContent) -> dict[str, Any]:
    return variant.model_dump(exclude_none=True)


def channels_covered(version: TemplateVersion) -> set[str]:
    """The channels a version has content for."""
    covered = set(version.channel_content or {})
    if version.subject and (version.html or version.text):
        covered.add(Channel.EMAIL.value)
    return covered
