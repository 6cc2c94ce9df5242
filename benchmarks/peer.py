"""The peer: the reference tus server (tusd) beside our tus endpoint and our one-shot PUT.

The same file goes three ways into the same MinIO and bucket, with the same
part size and parts in flight: tusd's S3 store (`POST` then one `PATCH` with
the whole body), our tus endpoint (the same two requests), and our one-shot
`PUT`. The order rotates from run to run so a drifting machine load hits all
three alike. For each upload it records MiB/s, CPU seconds per GiB of the
server and of MinIO, and the server's peak RSS. On a small machine MinIO's own
CPU caps everyone; the server's CPU per GiB is the figure our code controls.

How it fails: an upload that does not complete raises RuntimeError (a figure
from a broken run would mean nothing); the servers are stopped either way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from benchmarks import plots
from benchmarks.client import (
    Users,
    create_session,
    http_session,
    stored_key,
    tus_upload,
    upload,
)
from benchmarks.context import Context, delete_objects
from benchmarks.environment import describe, secret_of
from benchmarks.process import CpuMeter, Server, ingest_server, sampling_rss
from benchmarks.report import describe_machine, print_table, size_label, write_result
from benchmarks.stats import spread
from benchmarks.tusd import OBJECT_PREFIX, ensure_tusd, tusd_server
from benchmarks.workload import MiB, video_body

PATHS = ("tusd", "ingest-tus", "ingest-put")
DEFAULT_SIZE = "1GiB"


@dataclass(frozen=True)
class Run:
    path: str
    size: int
    seconds: float
    peak_rss: int
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def mib_per_s(self) -> float:
        return self.size / self.seconds / MiB


Upload = Callable[[aiohttp.ClientSession], Awaitable[list[str]]]
"""Sends one file; the object keys it left in the bucket."""


async def timed(
    path: str, size: int, server: Server, meter: CpuMeter, send: Upload
) -> tuple[Run, list[str]]:
    async with http_session() as http, sampling_rss(server.pid) as rss:
        await meter.start()
        started = time.monotonic()
        keys = await send(http)
        seconds = time.monotonic() - started
        used = await meter.stop()
    return Run(path, size, seconds, rss.peak, used), keys


async def measure(ctx: Context, size: int, runs: int) -> list[Run]:
    settings = ctx.settings
    users = Users(secret_of(settings), 1)
    auth = users.auth(0)
    binary = await asyncio.to_thread(ensure_tusd)
    env = ctx.server_env(max_file_size=size + MiB)
    results: list[Run] = []
    async with (
        ingest_server(env, source=ctx.source) as ours,
        tusd_server(settings, binary=binary) as tusd,
    ):

        async def via_tusd(http: aiohttp.ClientSession) -> list[str]:
            url = await tus_upload(http, f"{tusd.url}/files/", size, video_body(size), {})
            upload_id = url.rstrip("/").rsplit("/", 1)[-1].split("+", 1)[0]
            return [f"{OBJECT_PREFIX}{upload_id}", f"{OBJECT_PREFIX}{upload_id}.info"]

        async def via_our_tus(http: aiohttp.ClientSession) -> list[str]:
            url = await tus_upload(http, f"{ours.url}/v1/tus/", size, video_body(size), auth)
            return [await stored_key(http, ours.url, url.rsplit("/", 1)[-1], auth)]

        async def via_our_put(http: aiohttp.ClientSession) -> list[str]:
            upload_url = await create_session(http, ours.url, auth, size)
            outcome = await upload(http, upload_url, auth, video_body(size), size)
            if not outcome.ok or outcome.result is None:
                raise RuntimeError(f"PUT of {size} bytes failed: {outcome.error}")
            return [str(outcome.result["s3_key"])]

        ways: dict[str, tuple[Server, Upload]] = {
            "tusd": (tusd, via_tusd),
            "ingest-tus": (ours, via_our_tus),
            "ingest-put": (ours, via_our_put),
        }
        for n in range(runs):
            order = PATHS[n % 3 :] + PATHS[: n % 3]
            for path in order:
                server, send = ways[path]
                meter = CpuMeter(ctx.cpu_pids(server=server.pid))
                run, keys = await timed(path, size, server, meter, send)
                await delete_objects(settings, keys)
                results.append(run)
                print(
                    f"  {path:>10} {size_label(size):>7} run {n + 1}: "
                    f"{run.mib_per_s:7.1f} MiB/s, server {run.cpu.get('server', 0):.2f} CPU-s",
                    flush=True,
                )
    return results


def summarize(results: list[Run]) -> list[dict[str, Any]]:
    gib = 2**30
    rows = []
    for path in PATHS:
        runs = [r for r in results if r.path == path]
        rows.append(
            {
                "path": path,
                "mib_s": spread([r.mib_per_s for r in runs]),
                "server_cpu_s_per_gib": spread(
                    [r.cpu.get("server", 0.0) / (r.size / gib) for r in runs]
                ),
                "minio_cpu_s_per_gib": spread(
                    [r.cpu.get("minio", 0.0) / (r.size / gib) for r in runs]
                ),
                "peak_rss_mib": spread([r.peak_rss / MiB for r in runs]),
            }
        )
    tusd = spread([r.mib_per_s for r in results if r.path == "tusd"]).median
    for row, path in zip(rows, PATHS, strict=True):
        mine = spread([r.mib_per_s for r in results if r.path == path]).median
        row["ratio_to_tusd"] = mine / tusd
    return rows


async def run(ctx: Context, *, size: int, runs: int) -> dict[str, Any]:
    environment = await asyncio.to_thread(describe, ctx.settings)
    print(describe_machine(environment))
    results = await measure(ctx, size, runs)
    rows = summarize(results)
    print_table(
        f"the peer: {size_label(size)}, one upload at a time, median (min-max) of {runs} runs",
        ["path", "MiB/s", "of tusd", "server CPU-s/GiB", "MinIO CPU-s/GiB", "peak RSS MiB"],
        [
            [
                r["path"],
                r["mib_s"],
                r["ratio_to_tusd"],
                r["server_cpu_s_per_gib"],
                r["minio_cpu_s_per_gib"],
                r["peak_rss_mib"],
            ]
            for r in rows
        ],
    )
    doc = await asyncio.to_thread(
        write_result,
        ctx.out,
        "peer",
        ctx.label,
        {
            "environment": environment,
            "config": {"size": size, "runs": runs, "tusd": "v2.9.1", "source": ctx.source},
            "summary": rows,
            "runs": [{**asdict(r), "mib_per_s": r.mib_per_s} for r in results],
        },
    )
    if ctx.plot:
        await asyncio.to_thread(plots.peer, doc, ctx.out)
    return doc
