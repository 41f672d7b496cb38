"""Templates and their immutable versions, compiled in a Jinja2 sandbox."""
