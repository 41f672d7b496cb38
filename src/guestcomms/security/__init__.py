"""Security policies that guard guestcomms's own outbound traffic (see :mod:`.ssrf`)."""

from guestcomms.security.ssrf import (
    ForbiddenTargetError,
    GuardedConnector,
    SsrfGuard,
    is_forbidden_address,
    parse_host_address,
)

__all__ = [
    "ForbiddenTargetError",
    "GuardedConnector",
    "SsrfGuard",
    "is_forbidden_address",
    "parse_host_address",
]
