"""Fixtures of the sweep tests: the tus rig (shared state, fake clock) and one living instance."""

from __future__ import annotations

import pytest

from tests.unit.test_tus_support import ClientFactory, Instance, TusRig


@pytest.fixture
def rig() -> TusRig:
    return TusRig()


@pytest.fixture
async def node(rig: TusRig, aiohttp_client: ClientFactory) -> Instance:
    node = await rig.instance(aiohttp_client, "front")
    await rig.heartbeats("front").beat()
    return node
