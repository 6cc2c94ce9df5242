"""`ingest serve` as a child process whose stderr lines are kept with the time each arrived.

The fault scenarios count the log lines a server wrote while the broker was
down, and send it signals; `serve` starts it on a free port, waits for
`/readyz`, and on the way out stops it (SIGTERM, then SIGKILL) and appends
its stderr to a log file.

How it fails: RuntimeError when the server exits before it is ready, a
TimeoutError when it is not ready in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from benchmarks.process import free_port

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ServeProcess:
    """`ingest serve` as deployed; its stderr lines with the time each arrived."""

    url: str
    process: asyncio.subprocess.Process
    lines: list[tuple[float, str]] = field(default_factory=list)

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()

    def lines_between(self, start: float, end: float) -> int:
        return sum(1 for at, _ in self.lines if start <= at <= end)

    def tail(self) -> str:
        return "".join(line for _, line in self.lines[-30:])


@asynccontextmanager
async def serve(
    env: Mapping[str, str], *, log: Path, ready_within: float = 60.0
) -> AsyncIterator[ServeProcess]:
    """A ready `ingest serve` on a free port; SIGTERM (then SIGKILL) on the way out, when its
    stderr is appended to `log`."""
    port = free_port()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env={**os.environ, **env},
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    server = ServeProcess(f"http://127.0.0.1:{port}", child)
    reading = asyncio.create_task(_collect(child.stderr, server.lines))
    try:
        await _ready(server, ready_within)
        yield server
    finally:
        if child.returncode is None:
            child.terminate()
        try:
            await asyncio.wait_for(child.wait(), 30)
        except TimeoutError:
            child.kill()
            await child.wait()
        await reading
        text = "".join(line for _, line in server.lines)
        await asyncio.to_thread(_append, log, text)


def _append(path: Path, text: str) -> None:
    with path.open("a") as file:
        file.write(text)


async def _collect(stream: asyncio.StreamReader | None, lines: list[tuple[float, str]]) -> None:
    if stream is None:
        return
    while line := await stream.readline():
        lines.append((time.monotonic(), line.decode(errors="replace")))


async def _ready(server: ServeProcess, within: float) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(within):
        while True:
            if server.process.returncode is not None:
                raise RuntimeError(f"ingest serve exited:\n{server.tail()}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{server.url}/readyz") as answer:
                    if answer.status == 200:
                        return
            await asyncio.sleep(0.2)
