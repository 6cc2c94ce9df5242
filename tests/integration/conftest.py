"""Integration tests: everything here talks to the real Kafka and S3 of tests/conftest.py.

`ingest` serves the module's settings on a free port, `http` is a client session;
a module that needs other settings defines its own `ingest` over them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from ingest.settings import IngestSettings
from tests.integration.brokers import doomed_broker as doomed_broker
from tests.integration.harness import RunningIngest, running_ingest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
async def ingest(settings: IngestSettings) -> AsyncIterator[RunningIngest]:
    async with running_ingest(settings) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
