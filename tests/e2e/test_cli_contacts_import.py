"""``guestcomms contacts import``, run as a subprocess: progress, summary, per-row errors, and
one-line failures. Few tests on purpose: each subprocess costs about two seconds."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

from tests.e2e.test_cli import run_cli
from tests.support import create_contact, create_key, make_settings, running_app

CSV_TEXT = (
    "email,first_name,rsvp,table,household,diet_note\n"
    "ana@example.com,Ana,yes,7,The Silvas,\n"
    "bea@example.com,Bea,no,7,the silvas,nuts\n"
    "not-an-email,Typo,yes,,,\n"
    "cal@example.com,Cal,sometimes,,,\n"
    "dan@example.com,Dan,,9,,\n"
)


async def _organization_with_event(database_url: str) -> tuple[str, str]:
    """An organization "Ana & Ben" with an event and an existing contact; its key and event."""
    key = await create_key(database_url, "Ana & Ben")
    async with running_app(make_settings(database_url)) as api, api.as_key(key) as client:
        await create_contact(client, email="dan@example.com", first_name="Daniel")
        response = await client.post(
            "/v1/events", json={"name": "Wedding", "date": "2026-06-20", "timezone": "UTC"}
        )
        assert response.status_code == 201, response.text
        return key, response.json()["id"]


async def test_import_into_event_shows_progress_summary_and_errors(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The import reports progress and counts, prints and writes each refused row, and the
    guests are in the event afterwards."""
    key, event = await _organization_with_event(sqlite_url)
    guests = tmp_path / "guests.csv"
    guests.write_text(CSV_TEXT, encoding="utf-8")
    errors = tmp_path / "errors.csv"
    env = {"GUESTCOMMS_DATABASE_URL": sqlite_url}
    args = ["contacts", "import", str(guests), "--org", "Ana & Ben", "--event", event]
    result = await asyncio.to_thread(run_cli, *args, "--errors-csv", str(errors), env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "importing" in out
    assert "5/5" in out  # the progress bar ends with every row done
    counts = {
        cells[0]: cells[1]
        for line in out.splitlines()
        if len(cells := [c.strip() for c in line.strip("│┃ ").split("│")]) == 2
    }
    assert counts["created"] == "2"
    assert counts["updated"] == "1"
    assert counts["added to event"] == "3"
    assert counts["households created"] == "1"
    assert counts["errors"] == "2"
    refused = [line for line in out.splitlines() if line.startswith("│ 4 ")]
    assert len(refused) == 1
    assert "rsvp" in refused[0]
    with errors.open(encoding="utf-8") as written:
        rows = list(csv.DictReader(written))
    assert [(r["row"], r["field"]) for r in rows] == [("3", "email"), ("4", "rsvp")]
    assert all(r["message"] for r in rows)

    async with running_app(make_settings(sqlite_url)) as api, api.as_key(key) as client:
        listed = (await client.get(f"/v1/events/{event}/guests")).json()["items"]
    by_email = {g["contact"]["email"]: g for g in listed}
    assert set(by_email) == {"ana@example.com", "bea@example.com", "dan@example.com"}
    assert (
        by_email["ana@example.com"]["household_id"] == by_email["bea@example.com"]["household_id"]
    )
    assert by_email["dan@example.com"]["contact"]["first_name"] == "Dan"
    assert by_email["ana@example.com"]["rsvp"] == "yes"


async def test_import_failures_are_one_line_and_exit_1(sqlite_url: str, tmp_path: Path) -> None:
    """An unreadable file, an unknown organization and an unknown event each exit 1 with one
    line naming the problem, and import nothing."""
    key, event = await _organization_with_event(sqlite_url)
    guests = tmp_path / "guests.csv"
    guests.write_text(CSV_TEXT, encoding="utf-8")
    env = {"GUESTCOMMS_DATABASE_URL": sqlite_url}
    missing = tmp_path / "missing.csv"
    other_event = f"evt_{'0' * 32}"
    cases = [
        (["contacts", "import", str(missing), "--org", "Ana & Ben"], "missing.csv"),
        (["contacts", "import", str(guests), "--org", "Nobody"], "Nobody"),
        (["contacts", "import", str(guests), "--org", "Ana & Ben", "--event", other_event], "evt_"),
    ]
    for args, named in cases:
        result = await asyncio.to_thread(run_cli, *args, env=env)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error:")
        assert named in lines[0]
        assert "Traceback" not in result.stdout + result.stderr
    async with running_app(make_settings(sqlite_url)) as api, api.as_key(key) as client:
        contacts = (await client.get("/v1/contacts")).json()["items"]
        guests_now = (await client.get(f"/v1/events/{event}/guests")).json()["items"]
    assert [c["email"] for c in contacts] == ["dan@example.com"]
    assert guests_now == []
