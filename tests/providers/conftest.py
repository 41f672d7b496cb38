"""Fixtures for provider tests: real SMTP servers, a test certificate, SMTP providers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from guestcomms.channels.smtp import SmtpProvider
from tests.smtp_server import SmtpTestServer, make_self_signed_cert


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1, made once per run."""
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def start_smtp_server() -> Iterator[Callable[..., SmtpTestServer]]:
    """Start SmtpTestServers (keyword arguments as its constructor); stop them after the test."""
    servers: list[SmtpTestServer] = []

    def start(**kwargs: Any) -> SmtpTestServer:
        server = SmtpTestServer(**kwargs)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def smtp_server(start_smtp_server: Callable[..., SmtpTestServer]) -> SmtpTestServer:
    """A plain-text SMTP server that accepts everything and records it."""
    return start_smtp_server()


@pytest.fixture
async def make_smtp_provider(
    start_smtp_server: Callable[..., SmtpTestServer],
) -> AsyncIterator[Callable[..., SmtpProvider]]:
    """Build SmtpProviders for a test server; each is closed before the servers stop."""
    built: list[SmtpProvider] = []

    def make(server: SmtpTestServer, **kwargs: Any) -> SmtpProvider:
        kwargs.setdefault("timeout_seconds", 5.0)
        provider = SmtpProvider(host=server.host, port=server.port, **kwargs)
        built.append(provider)
        return provider

    yield make
    for provider in built:
        await provider.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """The shared HTTP session a composition root would give the providers."""
    async with aiohttp.ClientSession() as shared:
        yield shared
