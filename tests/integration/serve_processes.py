"""Real `ingest serve` processes for crash tests: started as the command line runs them, killed.

`serve_process` runs `python -m cli.main serve` from this checkout (its own
interpreter) on the module's bucket and topics, on a free port, with extra
environment (a short TTL, a fast heartbeat and sweep), waits until it answers
`/readyz`, and always kills it on the way out. `SIGKILL` is what a crash or
an OOM kill does: no drain, no abort, no last event.

How it fails: AssertionError with the server's stderr tail when it exits early
or does not become ready in time.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from deploy.stack.process import free_port
from ingest.auth import issue_token
from ingest.settings import IngestSettings
from tests.integration.cli_processes import cli_process


@dataclass
class ServeProcess:
    process: asyncio.subprocess.Process
    port: int
    secret: str
    stderr: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tail(self) -> str:
        return "".join(self.stderr[-40:])

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(self.secret, user, ttl_seconds=600)}"}

    async def kill(self) -> None:
        """SIGKILL: the process stops at once, in the middle of whatever it does."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
        async with asyncio.timeout(10):
            await self.process.wait()


def serve_environment(settings: IngestSettings, extra: Mapping[str, str]) -> dict[str, str]:
    assert settings.jwt_secret is not None
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "INGEST_TOPIC_PREFIX": settings.topic_prefix,
        "S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
        "S3_BUCKET": settings.s3_bucket,
        "AWS_ACCESS_KEY_ID": settings.aws_access_key_id or "",
        "AWS_SECRET_ACCESS_KEY": settings.aws_secret_access_key or "",
        "AWS_REGION": settings.aws_region,
        "INGEST_JWT_SECRET": settings.jwt_secret,
        "INGEST_LOG_LEVEL": "INFO",
        **extra,
    }


@asynccontextmanager
async def serve_process(
    settings: IngestSettings, extra: Mapping[str, str]
) -> AsyncIterator[ServeProcess]:
    port = free_port()
    # A journal of its own: two servers of one test must not contend for the default one.
    journal = await asyncio.to_thread(tempfile.mkdtemp, prefix="serve-journal-")
    assert settings.jwt_secret is not None
    lines: list[str] = []
    try:
        async with cli_process(
            ("serve", "--port", str(port)),
            env=serve_environment(settings, {"INGEST_JOURNAL_DIR": journal, **extra}),
            ready_url=f"http://127.0.0.1:{port}/readyz",
            stderr=lines,
        ) as process:
            yield ServeProcess(process, port, settings.jwt_secret, lines)
    finally:
        await asyncio.to_thread(shutil.rmtree, journal, ignore_errors=True)
