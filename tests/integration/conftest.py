"""Integration tests: everything here talks to the real Kafka and S3 of tests/conftest.py."""

from __future__ import annotations

import pytest

from tests.integration.brokers import doomed_broker as doomed_broker


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
