"""Benchmarks for guestcomms: ``make bench`` (``python -m bench``) prints the figures.

The end-to-end runs start the real processes with the project's CLI (``guestcomms serve`` on
SQLite; ``guestcomms api`` plus ``guestcomms worker`` on PostgreSQL), configured only by
``GUESTCOMMS_*`` environment variables, and drive them over HTTP as a client would. The SMTP
runs send to :mod:`bench.smtp_sink`, a minimal SMTP server in its own process, whose raw
ceiling (a bare aiosmtplib client against the same sink) is measured in the same run. The
HTTP provider runs (SendGrid email, Twilio SMS) configure a provider account pointed at the
project's provider simulator, run in its own process by :mod:`bench.provider_sim`.

Modules: ``procs`` (child processes), ``stores`` (a fresh SQLite file or PostgreSQL database,
and a read-only probe of its queue), ``e2e`` (one end-to-end run), ``ceiling`` (the raw SMTP
ceiling), ``smtp_sink`` and ``provider_sim`` (where messages go), ``content`` (the guests and
templates), ``profiling`` (py-spy against the worker), ``report`` (the tables).
"""
