"""Secret rotation for webhook endpoints: pure functions over the stored list."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from guestcomms.channels.webhook import generate_secret


def active_secrets(stored: list[dict[str, Any]], *, now: datetime) -> list[str]:
    """The secrets to sign with now: the current one and those still in their overlap."""
    return [
        s["secret"]
        for s in stored
        if s.get("expires_at") is None or datetime.fromisoformat(s["expires_at"]) > now
    ]


def rotate(
    stored: list[dict[str, Any]], *, now: datetime, overlap: timedelta
) -> tuple[str, list[dict[str, Any]]]:
    """A new current secret, and the list with the old ones expiring after ``overlap`` (so
    receivers that still verify with the old secret keep working while they switch)."""
    secret = generate_secret()
    ends = (now + overlap).isoformat()
    kept = [
        {**s, "expires_at": s.get("expires_at") or ends}
        for s in stored
        if s.get("expires_at") is None or datetime.fromisoformat(s["expires_at"]) > now
    ]
    return secret, [{"secret": secret, "expires_at": None}, *kept]
