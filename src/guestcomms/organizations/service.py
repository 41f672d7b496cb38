"""Organization set-up and API key issuing and revoking, used by the CLI (``keys ...``), the
key routes (``/v1/keys``) and the demo. The scopes a route needs are listed in docs/api.md."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from guestcomms.domain.clock import utc_now
from guestcomms.errors import NotFoundError, ValidationFailedError
from guestcomms.organizations.keys import generate_key
from guestcomms.organizations.models import ApiKey, Organization
from guestcomms.organizations.repository import OrganizationRepository

DEFAULT_SCOPES = ("admin",)
# every scope a route checks (``Caller.require``); ``admin`` grants them all
KNOWN_SCOPES = frozenset(
    {
        "admin",
        "audiences:read",
        "audiences:write",
        "contacts:read",
        "contacts:write",
        "events:read",
        "events:write",
        "inbox:read",
        "inbox:write",
        "messages:read",
        "messages:send",
        "providers:read",
        "providers:write",
        "templates:read",
        "templates:write",
    }
)


def check_scopes(scopes: tuple[str, ...], *, field: str = "scopes") -> None:
    """``ValidationFailedError`` naming ``field`` if a scope is not one of ``KNOWN_SCOPES``."""
    unknown = sorted(set(scopes) - KNOWN_SCOPES)
    if unknown:
        raise ValidationFailedError(
            f"unknown scope {unknown[0]!r}; one of {', '.join(sorted(KNOWN_SCOPES))}",
            field=field,
        )


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just created: the plaintext is shown once and never stored."""

    organization: Organization
    key: ApiKey
    plaintext: str


async def ensure_organization(repo: OrganizationRepository, name: str) -> Organization:
    """The organization called ``name``, created if it does not exist yet."""
    return await repo.by_name(name) or await repo.add(Organization(name=name))


async def issue_key(
    repo: OrganizationRepository,
    *,
    organization_name: str,
    key_name: str = "",
    scopes: tuple[str, ...] = DEFAULT_SCOPES,
    rate_limit: int | None = None,
) -> IssuedKey:
    """Create an API key for ``organization_name`` (creating the organization if needed);
    ``ValidationFailedError`` for an unknown scope."""
    check_scopes(scopes)
    organization = await ensure_organization(repo, organization_name)
    key, plaintext = await add_key(
        repo, organization.id, key_name=key_name, scopes=scopes, rate_limit=rate_limit
    )
    return IssuedKey(organization=organization, key=key, plaintext=plaintext)


async def add_key(
    repo: OrganizationRepository,
    organization_id: uuid.UUID,
    *,
    key_name: str,
    scopes: tuple[str, ...],
    rate_limit: int | None = None,
) -> tuple[ApiKey, str]:
    """A new key of the organization and its plaintext (shown once, never stored);
    ``ValidationFailedError`` for an unknown scope."""
    check_scopes(scopes)
    generated = generate_key()
    key = await repo.add_key(
        ApiKey(
            organization_id=organization_id,
            name=key_name,
            prefix=generated.prefix,
            secret_hash=generated.secret_hash,
            scopes=sorted(set(scopes)),
            rate_limit=rate_limit,
        )
    )
    return key, generated.plaintext


async def revoke_key(
    repo: OrganizationRepository, organization_id: uuid.UUID, key_id: uuid.UUID
) -> ApiKey:
    """Revoke the organization's key (idempotent: a revoked key keeps its first ``revoked_at``);
    ``NotFoundError`` if the organization has no such key. It is refused (401) from then on."""
    key = await repo.key_of(organization_id, key_id)
    if key is None:
        raise NotFoundError("API key not found")
    if key.revoked_at is None:
        key.revoked_at = utc_now()
    return key
