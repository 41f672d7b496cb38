"""Command groups of the ``guestcomms`` CLI that live outside ``cli.py`` (one module each),
and the helpers every command shares."""
