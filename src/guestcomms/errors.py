"""Every error guestcomms raises on purpose, under one root.

    GuestcommsError
    ├── ConfigError                  settings are invalid (raised at start, one line)
    ├── NotFoundError                no such resource in this organization (404)
    ├── ValidationFailedError        input is well-formed JSON but wrong (422, names the field)
    │   ├── TemplateError            a template does not compile or uses an unknown variable
    │   ├── UnknownContactError      a message names a contact that does not exist
    │   └── FilterSyntaxError        an audience filter is malformed (with its position)
    ├── ConflictError                the request conflicts with current state (409)
    │   └── IdempotencyMismatchError the Idempotency-Key was used with another body
    ├── AuthenticationError          a missing, malformed or unknown API key (401)
    ├── PermissionDeniedError        the key lacks the scope for this route (403)
    ├── PayloadTooLargeError         the request body is over the limit (413)
    ├── TooManyRequestsError         an API key is over its rate limit (429, Retry-After)
    ├── ProviderError                a provider refused or failed a send (see channels.base)
    ├── InboundSignatureError        a provider webhook is unsigned or badly signed (401,
    │                                channels.events); InboundPayloadError: unreadable (422)
    └── RateLimitWaitTooLongError    a provider's rate allows no send soon (engine.ratelimit)

Each class's docstring is its default message. The API maps them to RFC 9457 problem
documents in one place (``api.problems``); the CLI prints ``str(error)`` and exits non-zero.
"""

from __future__ import annotations


class GuestcommsError(Exception):
    """Something went wrong in guestcomms."""

    status: int = 500
    slug: str = "internal-error"
    title: str = "Internal error"

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.field = field
        super().__init__(self.message)


class ConfigError(GuestcommsError):
    """The configuration is invalid."""


class NotFoundError(GuestcommsError):
    """The resource does not exist."""

    status = 404
    slug = "not-found"
    title = "Not found"


class ValidationFailedError(GuestcommsError):
    """The request is invalid."""

    status = 422
    slug = "validation-error"
    title = "Invalid request"


class TemplateError(ValidationFailedError):
    """The template is invalid."""

    slug = "template-error"
    title = "Invalid template"

    def __init__(
        self, message: str | None = None, *, field: str | None = None, line: int | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.line = line


class UnknownContactError(ValidationFailedError):
    """A recipient is not a contact of this organization."""

    slug = "unknown-contact"
    title = "Unknown contact"


class FilterSyntaxError(ValidationFailedError):
    """The audience filter is invalid."""

    slug = "filter-error"
    title = "Invalid filter"

    def __init__(
        self,
        message: str | None = None,
        *,
        position: int,
        line: int,
        column: int,
        field: str | None = "filter",
    ) -> None:
        super().__init__(message, field=field)
        self.position, self.line, self.column = position, line, column


class ConflictError(GuestcommsError):
    """The request conflicts with the resource's current state."""

    status = 409
    slug = "conflict"
    title = "Conflict"


class IdempotencyMismatchError(ConflictError):
    """This Idempotency-Key was already used with a different request body."""

    status = 422
    slug = "idempotency-key-reused"
    title = "Idempotency key reused"


class AuthenticationError(GuestcommsError):
    """A valid API key is required: send `Authorization: Bearer <key>`."""

    status = 401
    slug = "unauthorized"
    title = "Unauthorized"


class PermissionDeniedError(GuestcommsError):
    """This API key lacks the scope this request needs."""

    status = 403
    slug = "forbidden"
    title = "Forbidden"


class PayloadTooLargeError(GuestcommsError):
    """The request body is larger than the server accepts."""

    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class TooManyRequestsError(GuestcommsError):
    """This API key has made too many requests; retry after the time given."""

    status = 429
    slug = "rate-limited"
    title = "Too many requests"

    def __init__(self, message: str | None = None, *, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
