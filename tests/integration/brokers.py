"""A private single-node Kafka broker that a test may kill, to see what a dead broker does.

The module-wide broker of tests/conftest.py is shared and must live; this one
is the test's own. It needs Java and the Kafka jars of the local stack, and is
skipped without them.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy import stack
from deploy.stack import kafka, process
from deploy.stack.process import free_port


@pytest.fixture
def doomed_broker(tmp_path: Path) -> Iterator[tuple[str, int, str]]:
    """A private single-node broker that a test may kill: (bootstrap, pid, marker)."""
    if shutil.which("java") is None:
        pytest.skip("a private broker needs Java")
    try:
        libs = kafka.ensure_jars(stack.default_cache_dir())
    except stack.StackError as error:
        pytest.skip(f"no Kafka jars for a private broker: {error}")
    port = free_port()
    pid, log = kafka.start(libs=libs, state_dir=tmp_path, port=port, controller_port=free_port())
    try:
        kafka.wait_ready(pid=pid, marker=str(tmp_path), port=port, log=log)
        yield f"127.0.0.1:{port}", pid, str(tmp_path)
    finally:
        process.stop(pid, str(tmp_path), grace=5)


def wait_until_dead(pid: int, marker: str) -> None:
    deadline = time.monotonic() + 10
    while process.is_running(pid, marker):
        assert time.monotonic() < deadline, "the broker did not die"
        time.sleep(0.05)
