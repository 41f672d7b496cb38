"""Inbound provider webhooks: verified, normalised and applied to deliveries idempotently."""
