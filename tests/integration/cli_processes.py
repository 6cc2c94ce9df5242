"""A command of this checkout (`python -m cli.main ...`) run as a real process for fault tests.

`cli_process` starts it with its own interpreter from the repository root,
keeps its stderr (read all along, so a chatty process never blocks on a full
pipe), waits until `ready_url` answers 200, and always SIGKILLs it on the way
out if it is still alive.

How it fails: AssertionError with the stderr tail when the process exits early
or does not become ready within `within` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


async def _collect(stream: asyncio.StreamReader | None, lines: list[str]) -> None:
    if stream is None:
        return
    while line := await stream.readline():
        lines.append(line.decode(errors="replace"))


@asynccontextmanager
async def cli_process(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    ready_url: str,
    stderr: list[str],
    within: float = 45.0,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The running process of `ingest ARGS`, ready; its stderr lines are appended to `stderr`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        *args,
        cwd=ROOT,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    reading = asyncio.create_task(_collect(process.stderr, stderr))
    try:
        await _ready(process, ready_url, stderr, within)
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        async with asyncio.timeout(15):
            await process.wait()
            await reading


async def _ready(
    process: asyncio.subprocess.Process, url: str, stderr: list[str], within: float
) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(within):
        while True:
            tail = "".join(stderr[-30:])
            assert process.returncode is None, f"the process exited:\n{tail}"
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as answer:
                    if answer.status == 200:
                        return
            await asyncio.sleep(0.2)
