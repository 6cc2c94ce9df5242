"""Start `ingest serve` as a real process, and watch processes: resident memory and CPU time.

`ingest_server` runs the service exactly as deployed (its own interpreter,
event loop and environment) on a free port, waits for /readyz and stops it
with SIGTERM; it raises RuntimeError when the server does not become ready
(its stderr is in the message). `fanout_server` does the same for the live
service (`ingest consume fanout`). `source` runs another copy of the code (for
before/after comparisons): the server starts in that directory, so its
`ingest` package wins over the installed one. Readings come from /proc and
are Linux-only; a process that has gone away reads as 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_open_files_limit(wanted: int = 65536) -> int:
    """Raise this process's RLIMIT_NOFILE towards `wanted` (children inherit it); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else wanted
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def rss_bytes(pid: int) -> int:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads together."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name (field 2) may hold spaces; the fields after it do not.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine, all cores, since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / _CLOCK_TICKS, idle / _CLOCK_TICKS


def listening_pid(port: int) -> int | None:
    """The process listening on TCP `port` on this machine, if it can be found."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                columns = line.split()
                local, state, inode = columns[1], columns[3], columns[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(entry.name)
    return None


@dataclass
class RssSampler:
    """Samples a process's RSS every `interval` seconds while `run` is running."""

    pid: int
    interval: float = 0.1
    samples: list[tuple[float, int]] = field(default_factory=list)
    """(seconds since `origin`, RSS bytes)."""
    origin: float = field(default_factory=time.monotonic)

    async def run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.interval)

    async def sample(self) -> None:
        taken = time.monotonic() - self.origin
        self.samples.append((taken, await asyncio.to_thread(rss_bytes, self.pid)))

    @property
    def peak(self) -> int:
        return max((s for _, s in self.samples), default=0)


@asynccontextmanager
async def sampling_rss(pid: int, interval: float = 0.1) -> AsyncIterator[RssSampler]:
    sampler = RssSampler(pid, interval)
    task = asyncio.create_task(sampler.run())
    try:
        yield sampler
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sampler.sample()


class CpuMeter:
    """CPU seconds used by named processes (and the whole machine) between start and stop."""

    def __init__(self, pids: Mapping[str, int | None]) -> None:
        self._pids = {name: pid for name, pid in pids.items() if pid is not None}
        self._start: dict[str, float] = {}
        self._machine_start = (0.0, 0.0)
        self._wall_start = 0.0
        self.used: dict[str, float] = {}
        """CPU seconds per process, plus `machine_busy` and `wall`, once stopped."""

    async def start(self) -> None:
        self._start, self._machine_start = await asyncio.to_thread(self._read)
        self._wall_start = time.monotonic()

    async def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self._wall_start
        now, (busy, _) = await asyncio.to_thread(self._read)
        used = {name: now[name] - self._start[name] for name in self._pids}
        used["machine_busy"] = busy - self._machine_start[0]
        used["wall"] = wall
        self.used = used
        return used

    def _read(self) -> tuple[dict[str, float], tuple[float, float]]:
        return {n: cpu_seconds(p) for n, p in self._pids.items()}, machine_cpu_seconds()


async def stop_process(process: asyncio.subprocess.Process, *, grace: float) -> None:
    """SIGTERM, then SIGKILL when it has not exited within `grace` seconds."""
    if process.returncode is None:
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        process.kill()
        await process.wait()


@dataclass(frozen=True)
class Server:
    url: str
    pid: int


@asynccontextmanager
async def ingest_server(
    env: Mapping[str, str], *, source: Path | None = None, ready_within: float = 60.0
) -> AsyncIterator[Server]:
    async with _server(["serve"], env, source=source, ready_within=ready_within) as server:
        yield server


@asynccontextmanager
async def fanout_server(
    env: Mapping[str, str], *, source: Path | None = None, ready_within: float = 60.0
) -> AsyncIterator[Server]:
    command = ["consume", "fanout"]
    async with _server(command, env, source=source, ready_within=ready_within) as server:
        yield server


@asynccontextmanager
async def _server(
    command: list[str], env: Mapping[str, str], *, source: Path | None, ready_within: float
) -> AsyncIterator[Server]:
    port = free_port()
    # Data of its own (the event journal): servers of one run never contend for a directory.
    data = await asyncio.to_thread(tempfile.mkdtemp, prefix="bench-server-")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        *command,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env={**os.environ, "INGEST_DATA_DIR": data, **env, "INGEST_LOG_LEVEL": "WARNING"},
        cwd=source,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    # Drained all along: a server that logs a lot must never block on a full pipe.
    errors = asyncio.create_task(process.stderr.read())
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(url, process, errors, ready_within)
        yield Server(url, process.pid)
    finally:
        await stop_process(process, grace=60)
        log = await errors
        if log.strip():
            await asyncio.to_thread(_keep_log, port, log)
        await asyncio.to_thread(shutil.rmtree, data, ignore_errors=True)


async def _wait_ready(
    url: str, process: asyncio.subprocess.Process, errors: asyncio.Task[bytes], within: float
) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                log = (await errors).decode(errors="replace")
                raise RuntimeError(f"{url} exited with {process.returncode}:\n{log[-4000:]}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{url}/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the server at {url} was not ready within {within:g} s")


def _keep_log(port: int, log: bytes) -> None:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-ingest-{port}.log"
    with contextlib.suppress(OSError):
        path.write_bytes(log)
