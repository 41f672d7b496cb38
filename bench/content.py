"""What the benchmark sends: guests to import and a wedding invitation template.

The names mix ASCII and accented letters, as a real guest list does (the To header of an
accented name is RFC 2047 encoded), and the template has an HTML and a text part with
per-guest and per-message variables, so each email is the size and shape of a real one.
"""

from __future__ import annotations

import random
from typing import Any

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

TEMPLATE_NAME = "bench-invitation"
VARIABLES = {"venue": "Villa Balbiano, Lake Como", "date": "Saturday 12 September 2026"}
SUBJECT = "You're invited, {{ first_name }}!"
HTML = """\
<div style="font-family: Georgia, serif; max-width: 34rem; margin: 2rem auto; \
text-align: center; color: #3d3a36">
  <p style="letter-spacing: .25em; text-transform: uppercase; color: #b08d57">Save the date</p>
  <h1 style="font-weight: normal">Ana &amp; Ben are getting married</h1>
  <p>Dear {{ first_name }},</p>
  <p>We would love you to join us on <strong>{{ date }}</strong>
     at <strong>{{ venue }}</strong>.</p>
  {% if "table" in attributes %}
  <p>You will be seated at table {{ attributes["table"] }}.</p>
  {% endif %}
  <p>With love,<br>Ana &amp; Ben</p>
</div>
"""
TEXT = """\
Dear {{ first_name }},

Ana & Ben are getting married! We would love you to join us on {{ date }} at {{ venue }}.
{% if "table" in attributes %}
You will be seated at table {{ attributes["table"] }}.
{% endif %}
With love,
Ana & Ben
"""


def template_body() -> dict[str, Any]:
    """The ``POST /v1/templates`` body."""
    return {
        "name": TEMPLATE_NAME,
        "subject": SUBJECT,
        "html": HTML,
        "text": TEXT,
        "variables": sorted(VARIABLES),
    }


def guests(count: int) -> list[dict[str, Any]]:
    """``count`` contact rows for ``POST /v1/contacts/import``, each with a unique email."""
    rng = random.Random(SEED)
    rows = []
    for number in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        rows.append(
            {
                "email": f"guest{number}@example.com",
                "first_name": first,
                "last_name": last,
                "tags": ["bench", rng.choice(("bride", "groom"))],
                "attributes": {"rsvp": "yes", "table": rng.randint(1, TABLES)},
            }
        )
    return rows
