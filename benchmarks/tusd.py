"""The reference tus server (tusd) as a peer in the benchmarks: built, started, stopped.

tusd is built once with the Go toolchain at a pinned version into the stack's
cache directory (outside the repository), then run on loopback with its S3
store against the same MinIO and bucket as `ingest serve`, with the same part
size and parts in flight, so the two differ only in their code.

How it fails: StackError when Go is missing or the build fails; RuntimeError
when tusd does not answer within `ready_within` seconds (its log in the message).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from benchmarks.process import Server, free_port, stop_process
from deploy import stack
from deploy.stack.gobuild import go_install
from deploy.stack.process import tail as process_tail
from ingest.settings import IngestSettings

TUSD_VERSION = "v2.9.1"
BASE_PATH = "/files/"
OBJECT_PREFIX = "bench/tusd/"


def ensure_tusd(cache_dir: Path | None = None) -> Path:
    cache = cache_dir or stack.default_cache_dir()
    return go_install(
        "github.com/tus/tusd/v2/cmd/tusd",
        TUSD_VERSION,
        binary="tusd",
        home=cache / f"tusd-{TUSD_VERSION}",
    )


@asynccontextmanager
async def tusd_server(
    settings: IngestSettings, *, binary: Path, ready_within: float = 30.0
) -> AsyncIterator[Server]:
    """tusd on a free loopback port, storing into the settings' bucket under `bench/tusd/`."""
    port = free_port()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": settings.aws_access_key_id or "",
        "AWS_SECRET_ACCESS_KEY": settings.aws_secret_access_key or "",
        "AWS_REGION": settings.aws_region,
    }
    args = [
        "-host=127.0.0.1",
        f"-port={port}",
        f"-base-path={BASE_PATH}",
        f"-s3-bucket={settings.s3_bucket}",
        f"-s3-endpoint={settings.s3_endpoint_url}",
        f"-s3-object-prefix={OBJECT_PREFIX}",
        f"-s3-part-size={settings.part_size}",
        f"-s3-concurrent-part-uploads={settings.parts_in_flight}",
        "-disable-download",
        "-expose-metrics=false",
        "-show-greeting=false",
        "-verbose=false",
    ]
    log = Path(tempfile.gettempdir()) / f"bench-tusd-{port}.log"
    out = await asyncio.to_thread(log.open, "wb")
    try:
        process = await asyncio.create_subprocess_exec(
            str(binary), *args, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    finally:
        out.close()  # the child has its own copy of the descriptor
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(url, process, ready_within, log)
        yield Server(url, process.pid)
    finally:
        await stop_process(process, grace=10)


async def _wait_ready(
    url: str, process: asyncio.subprocess.Process, within: float, log: Path
) -> None:
    deadline = asyncio.get_running_loop().time() + within
    async with aiohttp.ClientSession() as http:
        while asyncio.get_running_loop().time() < deadline:
            if process.returncode is not None:
                break
            with contextlib.suppress(aiohttp.ClientError):
                async with http.options(f"{url}{BASE_PATH}") as response:
                    if response.status in (200, 204):
                        return
            await asyncio.sleep(0.2)
    tail = await asyncio.to_thread(process_tail, log)
    raise RuntimeError(f"tusd did not become ready at {url}; {log}:\n{tail}")
