"""Organization set-up and API key issuing, used by the CLI (``keys create``) and the demo."""

from __future__ import annotations

from dataclasses import dataclass

from guestcomms.organizations.keys import generate_key
from guestcomms.organizations.models import ApiKey, Organization
from guestcomms.organizations.repository import OrganizationRepository

DEFAULT_SCOPES = ("admin",)


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
) -> IssuedKey:
    """Create an API key for ``organization_name`` (creating the organization if needed)."""
    organization = await ensure_organization(repo, organization_name)
    generated = generate_key()
    key = await repo.add_key(
        ApiKey(
            organization_id=organization.id,
            name=key_name,
            prefix=generated.prefix,
            secret_hash=generated.secret_hash,
            scopes=list(scopes),
        )
    )
    return IssuedKey(organization=organization, key=key, plaintext=generated.plaintext)
