"""Liveness (``/healthz``: the process answers) and readiness (``/readyz``: the database does)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from guestcomms.api.deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness", response_model=None)
async def readyz(runtime: RuntimeDep) -> dict[str, str] | JSONResponse:
    """The database answers; 503 if it does not."""
    try:
        async with runtime.sessions() as session:
            await session.execute(text("SELECT 1"))
    except Exception as e:  # any failure means not ready
        return JSONResponse({"status": "unavailable", "error": type(e).__name__}, status_code=503)
    return {"status": "ok"}
