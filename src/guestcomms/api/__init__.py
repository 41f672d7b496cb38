"""HTTP plumbing shared by every resource: auth, sessions, problem+json errors, health."""
