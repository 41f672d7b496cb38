"""The audit log: append-only, hash-chained entries of every change made through the API or
the CLI, and the check that finds an altered or removed entry."""
