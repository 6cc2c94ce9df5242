"""Fixtures of the tus HTTP tests on one instance: the tus rig (shared state, fake clock), the
instance and its test client."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.unit.test_tus_support import ClientFactory, Instance, TusRig


@pytest.fixture
def rig() -> TusRig:
    return TusRig()


@pytest.fixture
async def node(rig: TusRig, aiohttp_client: ClientFactory) -> Instance:
    return await rig.instance(aiohttp_client)


@pytest.fixture
def client(node: Instance) -> TestClient[Any, Any]:
    return node.client
