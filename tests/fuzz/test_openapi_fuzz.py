"""Fuzzing: schemathesis generates requests for every operation of the served OpenAPI spec
and checks that none gets a 5xx and every response matches the schema it documents.

The app is served by uvicorn in a thread (one event loop, as in production) on a fresh SQLite
database, called with an admin key of organization A; organization B has rows of its own, so
ids that exist (B's) are reachable by A's guesses. The number of examples per operation is
bounded so the whole run takes well under a minute on two cores (about 20 s).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import response_schema_conformance

from guestcomms.app import create_app
from guestcomms.db.migrate import upgrade
from tests.smtp_server import free_port
from tests.support import create_key, make_settings

# a fixed seed in `make test`, so a run is repeatable; GUESTCOMMS_FUZZ_RANDOM=1 and a larger
# GUESTCOMMS_FUZZ_EXAMPLES explore further (locally or in a nightly job)
EXAMPLES_PER_OPERATION = int(os.environ.get("GUESTCOMMS_FUZZ_EXAMPLES", "10"))
RANDOM = os.environ.get("GUESTCOMMS_FUZZ_RANDOM") == "1"
STARTUP_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Served:
    """The running app's base URL, organization A's admin key, and A's and B's ids."""

    url: str
    key: str
    known: dict[str, dict[str, str]]  # organization ("a", "b") -> path parameter -> an id


def _post(client: httpx.Client, path: str, body: dict[str, Any], status: int = 201) -> str:
    response = client.post(path, json=body)
    assert response.status_code == status, (path, response.text)
    value: str = response.json().get("id", "")
    return value


def _seed(url: str, key: str, name: str) -> dict[str, str]:
    """One of each kind of row in ``key``'s organization: the ids, by path parameter name."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
        contact = _post(client, "/v1/contacts", {"email": f"guest@{name}.example"})
        hello = {"name": "t", "subject": "Hi", "text": "Hello {{ first_name }}"}
        template = _post(client, "/v1/templates", hello)
        event = _post(client, "/v1/events", {"name": "E", "date": "2026-06-20", "timezone": "UTC"})
        household = _post(client, f"/v1/events/{event}/households", {"name": "H"})
        _post(client, f"/v1/events/{event}/guests", {"contact_id": contact})
        message = _post(
            client, "/v1/messages", {"template_id": template, "contact_ids": [contact]}, 202
        )
        delivery = client.get(f"/v1/messages/{message}").json()["deliveries"][0]["id"]
        return {
            "contact_id": contact,
            "template_id": template,
            "event_id": event,
            "household_id": household,
            "message_id": message,
            "delivery_id": delivery,
            "audience_id": _post(client, "/v1/audiences", {"name": "A", "filter": 'tags has "x"'}),
            "campaign_id": _post(client, "/v1/campaigns", {"name": "C", "template_id": template}),
            "provider_id": _post(
                client,
                "/v1/providers",
                {"name": "p", "kind": "sendgrid", "credentials": {"api_key": "SG.x"}},
            ),
            "endpoint_id": _post(
                client, "/v1/webhook-endpoints", {"url": f"https://{name}.example/hooks"}
            ),
            # a second key: revoking the one the fuzzer calls with would end the run
            "key_id": _post(client, "/v1/keys", {"scopes": ["contacts:read"]}),
        }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The app on a free port for this module's tests, stopped afterwards."""
    path: Path = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    database_url = f"sqlite+aiosqlite:///{path}"
    upgrade(database_url)
    key_a = asyncio.run(create_key(database_url, "Fuzz A"))
    key_b = asyncio.run(create_key(database_url, "Fuzz B"))
    port = free_port()
    config = uvicorn.Config(
        create_app(make_settings(database_url)),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws="none",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fuzz-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.started:
        assert time.monotonic() < deadline, "the app did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    try:
        known = {"a": _seed(url, key_a, "a"), "b": _seed(url, key_b, "b")}
        yield Served(url=url, key=key_a, known=known)
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT_SECONDS)


def _fuzz(operation: APIOperation, served: Served) -> str | None:
    """Run the operation's examples; the first failure's description, or ``None``."""

    @given(case=operation.as_strategy(), ids=st.sampled_from(["generated", "a", "b"]))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: report a failure as found
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=not RANDOM,
    )
    def run(case: schemathesis.Case, ids: str) -> None:
        if ids != "generated" and case.path_parameters:
            # ids that exist: A's reach the routes' code, B's must be 404s (tenancy)
            known = served.known[ids]
            case.path_parameters = {k: known.get(k, v) for k, v in case.path_parameters.items()}
        case.call_and_validate(
            headers={"Authorization": f"Bearer {served.key}"},
            checks=[not_a_server_error, response_schema_conformance],
        )

    try:
        run()
    except (Exception, BaseExceptionGroup) as e:  # each operation's failure is collected
        return f"{operation.label}: {e}"
    return None


def test_no_server_errors_and_responses_match_the_schema(served: Served) -> None:
    """Every generated request gets a non-5xx answer that conforms to the documented schema."""
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/stream"):  # an open stream never ends
            continue
        failure = _fuzz(operation, served)
        if failure is not None:
            failures.append(failure)
    assert not failures, "\n\n".join(failures)
