"""Outbound webhook endpoints: where the webhook channel posts, and the secrets that sign it."""
