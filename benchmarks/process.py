"""Start `ingest serve` as a real process and watch its resident memory."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class RssSampler:
    pid: int
    interval: float = 0.1
    samples: list[tuple[float, int]] = field(default_factory=list)

    async def run(self) -> None:
        started = time.monotonic()
        while True:
            sample = await asyncio.to_thread(rss_bytes, self.pid)
            self.samples.append((time.monotonic() - started, sample))
            await asyncio.sleep(self.interval)

    @property
    def peak(self) -> int:
        return max((s for _, s in self.samples), default=0)


@dataclass(frozen=True)
class Server:
    url: str
    pid: int


@asynccontextmanager
async def ingest_server(env: Mapping[str, str]) -> AsyncIterator[Server]:
    port = free_port()
    log = Path(tempfile.gettempdir()) / f"bench-ingest-{port}.log"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ingest.cli.main",
        "serve",
        "--port",
        str(port),
        env={**os.environ, **env, "INGEST_LOG_LEVEL": "WARNING"},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"{url}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("ingest serve did not become ready")
        yield Server(url, process.pid)
    finally:
        process.terminate()
        _, errors = await asyncio.wait_for(process.communicate(), 30)
        await asyncio.to_thread(log.write_bytes, errors or b"")
