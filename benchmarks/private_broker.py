"""A single-node Kafka of a fault scenario's own, that may be SIGKILLed and started again.

It runs from the local stack's jars on free ports, with its data in the
scenario's directory; `restart` brings it back on that data and port.

How it fails: RuntimeError when Java or the Kafka jars are missing, or the
broker does not become ready or does not die.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from pathlib import Path

from benchmarks.process import free_port
from deploy import stack
from deploy.stack import kafka, process


class PrivateBroker:
    """A single-node Kafka of the scenario's own, on a fixed port, that may be killed."""

    def __init__(self, state_dir: Path) -> None:
        if shutil.which("java") is None:
            raise RuntimeError("a private Kafka broker needs Java")
        try:
            self._libs = kafka.ensure_jars(stack.default_cache_dir())
        except stack.StackError as error:
            raise RuntimeError(f"no Kafka jars for a private broker: {error}") from error
        self._state_dir = state_dir
        self.port = free_port()
        self._controller_port = free_port()
        self.pid: int | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._state_dir.mkdir(parents=True, exist_ok=True)
        self.pid, log = kafka.start(
            libs=self._libs,
            state_dir=self._state_dir,
            port=self.port,
            controller_port=self._controller_port,
        )
        self._wait_ready(log)

    def restart(self) -> None:
        self.pid, log = kafka.restart(libs=self._libs, state_dir=self._state_dir)
        self._wait_ready(log)

    def _wait_ready(self, log: Path) -> None:
        assert self.pid is not None
        try:
            kafka.wait_ready(pid=self.pid, marker=str(self._state_dir), port=self.port, log=log)
        except stack.StackError as error:
            raise RuntimeError(str(error)) from error

    def kill(self) -> None:
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while process.is_running(self.pid, str(self._state_dir)):
            if time.monotonic() > deadline:
                raise RuntimeError("the private broker did not die")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.pid is not None:
            process.stop(self.pid, str(self._state_dir), grace=5)
