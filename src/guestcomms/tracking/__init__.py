"""Email open and click tracking: signed tokens, link rewriting and machine-fetch rules."""
