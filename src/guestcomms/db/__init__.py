"""Persistence: the declarative base, engine and sessions, the queue's SQL, migrations."""
