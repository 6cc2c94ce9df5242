"""What every benchmark is given: the stack, where results go, and which server code to run.

`stack_pids` finds the MinIO and Kafka processes by their listening ports so
their CPU time can be counted; a process it cannot find (another machine, no
permission) is simply not counted. `delete_objects` removes what a benchmark
stored; a key that is already gone is not an error.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.environment import server_env
from benchmarks.process import listening_pid
from infra.s3 import open_s3, warm_session
from ingest.settings import IngestSettings


@dataclass(frozen=True)
class Context:
    settings: IngestSettings
    out: Path = Path("bench-results")
    label: str | None = None
    """Suffix of the result files (`throughput-before.json`)."""
    source: Path | None = None
    """A directory holding another copy of the `ingest` code to serve instead."""
    plot: bool = True
    stack_pids: dict[str, int | None] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    """More environment for the server (`--server-env INGEST_PARTS_IN_FLIGHT=8`)."""

    def server_env(self, *, max_file_size: int) -> dict[str, str]:
        return server_env(self.settings, max_file_size=max_file_size, extra=self.extra_env)

    def cpu_pids(self, **more: int | None) -> dict[str, int | None]:
        return {"client": os.getpid(), **more, **self.stack_pids}


def stack_pids(settings: IngestSettings) -> dict[str, int | None]:
    pids: dict[str, int | None] = {"minio": None, "kafka": None}
    s3 = urlsplit(settings.s3_endpoint_url or "")
    if s3.hostname in ("127.0.0.1", "localhost") and s3.port:
        pids["minio"] = listening_pid(s3.port)
    kafka = settings.kafka_bootstrap_servers.split(",")[0]
    host, _, port = kafka.rpartition(":")
    if host in ("127.0.0.1", "localhost") and port.isdigit():
        pids["kafka"] = listening_pid(int(port))
    return pids


async def delete_objects(settings: IngestSettings, keys: Iterable[str]) -> None:
    """Delete benchmark objects so repeated 4 GiB runs do not fill MinIO's disk."""
    keys = list(keys)
    if not keys:
        return
    async with open_s3(await warm_session(), settings.s3_endpoint()) as s3:
        slots = asyncio.Semaphore(32)

        async def one(key: str) -> None:
            async with slots:
                await s3.delete_object(Bucket=settings.s3_bucket, Key=key)

        await asyncio.gather(*(one(k) for k in keys))
