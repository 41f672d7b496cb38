"""What the benchmark sends: guests to import, a wedding invitation template and its SMS.

The names mix ASCII and accented letters, as a real guest list does (the To header of an
accented name is RFC 2047 encoded; an SMS to "Zoë" is UCS-2, two segments), and the template
has an HTML and a text part with per-guest and per-message variables, so each email is the
size and shape of a real one. Every guest has an email and a mobile number (UK mobiles
+447911000000 onwards, which ``phonenumbers`` accepts as valid), so the SMS runs send to the
same contacts.
"""

from __future__ import annotations

import random
from typing import Any

from guestcomms.demo import DEMO_HTML, DEMO_SUBJECT, DEMO_TEXT, DEMO_VARIABLES

SEED = 20_260_912  # fixed, so every run sends the same emails
FIRST_NAMES = (
    "Amelia", "Olivia", "Isla", "Zoë", "Chloé", "Sofia", "Léa", "Priya", "Mei", "Ingrid",
    "Oliver", "Noah", "Liam", "Arjun", "Mateo", "Luca", "Théo", "Kenji", "Tomás", "Malik",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Jones", "O'Brien", "García", "Rossi", "Müller", "Dubois", "Novak", "Patel",
    "Nakamura", "Chen", "Nguyen", "Okafor", "Haddad", "Silva", "Fernández", "Cohen", "Kim",
)  # fmt: skip
TABLES = 25

MAX_GUESTS = 300_000  # +447911000000 to +447911299999 are valid; +4479113... are not
TEMPLATE_NAME = "bench-invitation"
SMS_TEMPLATE_NAME = "bench-invitation-sms"
# the same invitation as `guestcomms demo`, so the bench measures what a planner sends
VARIABLES = DEMO_VARIABLES
SUBJECT = DEMO_SUBJECT
HTML = DEMO_HTML
TEXT = DEMO_TEXT
SMS = (
    "Hi {{ first_name }}, Ana & Ben are getting married on {{ date }} at {{ venue }}. "
    "Your invitation is in your inbox."
)


def template_body() -> dict[str, Any]:
    """The ``POST /v1/templates`` body."""
    return {
        "name": TEMPLATE_NAME,
        "subject": SUBJECT,
        "html": HTML,
        "text": TEXT,
        "variables": sorted(VARIABLES),
    }


def sms_template_body() -> dict[str, Any]:
    """The ``POST /v1/templates`` body of the SMS template."""
    return {
        "name": SMS_TEMPLATE_NAME,
        "channel": "sms",
        "channel_content": {"sms": {"body": SMS}},
        "variables": sorted(VARIABLES),
    }


def guests(count: int) -> list[dict[str, Any]]:
    """``count`` contact rows for ``POST /v1/contacts/import``, each with a unique email and
    mobile number."""
    if count > MAX_GUESTS:
        raise ValueError(f"at most {MAX_GUESTS:,} guests (valid phone numbers run out)")
    rng = random.Random(SEED)
    rows = []
    for number in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        rows.append(
            {
                "email": f"guest{number}@example.com",
                "phone": f"+447911{number:06d}",
                "first_name": first,
                "last_name": last,
                "tags": ["bench", rng.choice(("bride", "groom"))],
                "attributes": {"rsvp": "yes", "table": rng.randint(1, TABLES)},
            }
        )
    return rows
