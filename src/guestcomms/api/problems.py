"""RFC 9457 problem+json: every error response is made here, from one mapping.

Each problem has a stable ``type`` (``/problems/<slug>``, documented in docs/api.md), a
``title``, the ``status``, a ``detail`` sentence and, where it applies, the ``field`` at fault
(and ``errors`` listing every field for validation failures).
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from guestcomms.errors import (
    FilterSyntaxError,
    GuestcommsError,
    TemplateError,
    TooManyRequestsError,
)

log = structlog.get_logger("guestcomms.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"
_HTTP_SLUGS = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}


def problem(*, status: int, slug: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    """A problem+json response."""
    body = {"type": f"/problems/{slug}", "title": title, "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE)


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _on_guestcomms_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GuestcommsError)  # noqa: S101 - registered for this class only
    extra: dict[str, Any] = {"field": exc.field}
    if isinstance(exc, TemplateError):
        extra["line"] = exc.line
    if isinstance(exc, FilterSyntaxError):
        extra.update(position=exc.position, line=exc.line, column=exc.column)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if isinstance(exc, TooManyRequestsError):
        headers = {"Retry-After": str(exc.retry_after_seconds)}
    response = problem(
        status=exc.status, slug=exc.slug, title=exc.title, detail=exc.message, **extra
    )
    if headers:
        response.headers.update(headers)
    return response


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    errors = [
        {
            # a JSON syntax error is located by character offset: the field is the body
            "field": "body" if e.get("type") == "json_invalid" else _field_path(e.get("loc", ())),
            "message": str(e.get("msg", "invalid")).removeprefix("Value error, "),
        }
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"field": "body", "message": "invalid request"}
    return problem(
        status=422,
        slug="validation-error",
        title="Invalid request",
        detail=f"{first['field']}: {first['message']}",
        field=first["field"],
        errors=errors,
    )


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    return problem(
        status=exc.status_code,
        slug=_HTTP_SLUGS.get(exc.status_code, "http-error"),
        title=str(exc.detail) if exc.status_code != 404 else "Not found",
        detail=str(exc.detail),
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("api.unhandled_error", path=request.url.path)
    return problem(
        status=500, slug="internal-error", title="Internal error", detail="unexpected error"
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error through the problem+json mapping."""
    app.add_exception_handler(GuestcommsError, _on_guestcomms_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
