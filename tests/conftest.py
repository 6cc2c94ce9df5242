"""Fixtures for every test: a guard that fails any blocking call made inside the event loop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

# Only blocking calls made through the project's own code are judged.
_SCANNED = ["ingest", "consumers", "schemas", "deploy", "tests"]


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    with blockbuster_ctx(_SCANNED) as guard:
        # botocore probes for optional "-extras" model files on every client it builds and
        # does not cache a miss: a few stat calls per client, once per process in the
        # service, which no warm-up can remove.
        guard.functions["os.stat"].can_block_in("botocore/loaders.py", "_find_extras")
        yield guard
