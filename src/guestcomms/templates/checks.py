"""The checks a send makes against its template, shared by one-off messages and campaigns:
the template exists (its latest version is used), every channel asked for has content, and
every declared variable is given a value and no undeclared one is."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from guestcomms.domain.enums import Channel
from guestcomms.domain.ids import IdKind, InvalidIdError, from_public
from guestcomms.errors import ValidationFailedError
from guestcomms.templates.models import Template, TemplateVersion
from guestcomms.templates.repository import TemplateRepository
from guestcomms.templates.service import channels_covered


async def template_for_send(
    repo: TemplateRepository, public_id: str, *, field: str = "template_id"
) -> tuple[Template, TemplateVersion]:
    """The template named by ``public_id`` and its latest version.

    ``ValidationFailedError`` naming ``field`` if the id is malformed or not the repository's
    organization's.
    """
    try:
        key = from_public(IdKind.TEMPLATE, public_id)
    except InvalidIdError as e:
        raise ValidationFailedError(str(e), field=field) from e
    template = await repo.get(key)
    version = await repo.version(key, template.latest_version) if template else None
    if template is None or version is None:
        raise ValidationFailedError(f"unknown template {public_id}", field=field)
    return template, version


def check_channels(version: TemplateVersion, channels: Sequence[Channel] | None) -> None:
    """Each channel listed once and covered by the version's content (``None``: the
    template's own channel, always covered)."""
    if not channels:
        return
    if len(set(channels)) != len(channels):
        raise ValidationFailedError("a channel is listed twice", field="channels")
    covered = channels_covered(version)
    for index, channel in enumerate(channels):
        if channel.value not in covered:
            raise ValidationFailedError(
                f"the template has no {channel.value} content "
                f"(it has: {', '.join(sorted(covered)) or 'none'})",
                field=f"channels[{index}]",
            )


def check_declared(version: TemplateVersion, names: Iterable[str], *, field: str) -> None:
    """Every name is a variable the version declares; the error names ``field.<name>``."""
    declared = set(version.variables or [])
    for name in names:
        if name not in declared:
            raise ValidationFailedError(
                f"unknown template variable {name!r}; the template declares "
                f"{sorted(declared) or 'none'}",
                field=f"{field}.{name}",
            )


def unset_variables(version: TemplateVersion, given: Collection[str]) -> list[str]:
    """The declared variables without a value in ``given``, sorted."""
    return sorted(set(version.variables or []) - set(given))
