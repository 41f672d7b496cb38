"""Suppressions (and later consent): who must not be sent to, on which channel, and why."""
