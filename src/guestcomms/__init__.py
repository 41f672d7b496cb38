"""guestcomms: a self-hostable guest-communications and notification engine for events."""

from __future__ import annotations

__version__ = "0.1.0"
