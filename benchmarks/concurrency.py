"""Many uploads at once: aggregate throughput, upload times, server memory, errors.

For each level (1, 10, 100, 1,000 concurrent uploads by default, each with
its own file size so the largest level still finishes in reasonable time),
every run starts a fresh `ingest serve`, creates the sessions first (spread
over users: no per-user limit shapes the figures), then starts all uploads
at the same instant. Then the same for slow clients that trickle their bodies
in small chunks with pauses, as phones on poor networks do: they hold
connections and partly filled parts for a long time.

Each connection costs a file descriptor in this process and in the server,
so the open-files limit is raised first (the server inherits it), and the
client's connection pool is unlimited. Failed uploads do not stop a run: they
are counted by kind and reported.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks import plots
from benchmarks.client import (
    UploadOutcome,
    Users,
    error_counts,
    http_session,
    try_create_sessions,
    upload,
)
from benchmarks.context import Context, delete_objects
from benchmarks.environment import describe, secret_of
from benchmarks.process import CpuMeter, ingest_server, raise_open_files_limit, sampling_rss
from benchmarks.report import describe_machine, print_table, size_label, write_result
from benchmarks.stats import percentile, spread
from benchmarks.workload import KiB, MiB, trickle_body, video_body

DEFAULT_LEVELS = "1,10,100,1000"
DEFAULT_SIZES = "256MiB,64MiB,16MiB,4MiB"


@dataclass(frozen=True)
class Trickle:
    """How a slow client sends: `chunk` bytes every `interval` seconds, `size` in all."""

    clients: int = 1000
    size: int = 256 * KiB
    chunk: int = 4 * KiB
    interval: float = 0.05

    @property
    def ideal_seconds(self) -> float:
        """How long one upload takes at best: the pauses between its chunks."""
        return (-(-self.size // self.chunk) - 1) * self.interval


async def one_run(
    ctx: Context, clients: int, size: int, trickle: Trickle | None = None
) -> dict[str, Any]:
    env = ctx.server_env(max_file_size=size + MiB)
    users = Users.for_uploads(secret_of(ctx.settings), clients)
    async with ingest_server(env, source=ctx.source) as server, http_session() as http:
        sessions = await try_create_sessions(http, server.url, users, [size] * clients)
        start = asyncio.Event()

        async def one(index: int) -> UploadOutcome:
            await start.wait()
            session = sessions[index]
            if isinstance(session, Exception):
                # Refused before any byte was sent: an error of this run all the same.
                failure = f"session: {type(session).__name__}: {session}"[:160]
                return UploadOutcome(size, time.monotonic(), 0.0, None, failure, None)
            body = (
                video_body(size)
                if trickle is None
                else trickle_body(size, trickle.chunk, trickle.interval)
            )
            return await upload(http, session, users.auth(index), body, size)

        tasks = [asyncio.create_task(one(i)) for i in range(clients)]
        await asyncio.sleep(0)  # every task is now waiting on `start`
        cpu = CpuMeter(ctx.cpu_pids(server=server.pid))
        async with sampling_rss(server.pid) as rss:
            await cpu.start()
            began = time.monotonic()
            start.set()
            outcomes = await asyncio.gather(*tasks)
            used = await cpu.stop()
    await delete_objects(ctx.settings, [str(o.result["s3_key"]) for o in outcomes if o.result])
    return _summarize_run(clients, size, outcomes, began, rss.peak, used)


def _summarize_run(
    clients: int,
    size: int,
    outcomes: list[UploadOutcome],
    began: float,
    peak_rss: int,
    cpu: dict[str, float],
) -> dict[str, Any]:
    ok = [o for o in outcomes if o.ok]
    seconds = [o.seconds for o in ok]
    wall = max(o.ended for o in outcomes) - began
    return {
        "concurrency": clients,
        "size": size,
        "ok": len(ok),
        "errors": len(outcomes) - len(ok),
        "error_kinds": error_counts(outcomes),
        "wall_seconds": wall,
        "aggregate_mb_s": sum(o.size for o in ok) / wall / 1e6,
        "p50_seconds": percentile(seconds, 50) if seconds else None,
        "p99_seconds": percentile(seconds, 99) if seconds else None,
        "max_seconds": max(seconds) if seconds else None,
        "peak_rss": peak_rss,
        "cpu": cpu,
    }


def _summarize_level(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def of(key: str) -> list[float]:
        return [float(r[key]) for r in runs if r[key] is not None]

    return {
        "concurrency": runs[0]["concurrency"],
        "size": runs[0]["size"],
        "size_label": size_label(runs[0]["size"]),
        "aggregate_mb_s": spread(of("aggregate_mb_s")),
        "p50_seconds": spread(of("p50_seconds") or [0.0]),
        "p99_seconds": spread(of("p99_seconds") or [0.0]),
        "peak_rss_mib": spread([r["peak_rss"] / MiB for r in runs]),
        "errors": sum(r["errors"] for r in runs),
        "uploads": sum(r["ok"] + r["errors"] for r in runs),
    }


async def run(
    ctx: Context,
    *,
    levels: list[int],
    sizes: list[int],
    runs: int,
    trickle: Trickle | None = None,
) -> dict[str, Any]:
    if len(sizes) == 1:
        sizes = sizes * len(levels)
    if len(sizes) != len(levels):
        raise ValueError("give one size, or one size per concurrency level")
    files_limit = raise_open_files_limit()
    environment = await asyncio.to_thread(describe, ctx.settings)
    print(f"{describe_machine(environment)}; open files limit {files_limit}")
    fast: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []
    for clients, size in zip(levels, sizes, strict=True):
        level_runs = []
        for n in range(runs):
            result = await one_run(ctx, clients, size)
            _progress("fast", n, result)
            level_runs.append(result)
        raw.extend(level_runs)
        fast.append(_summarize_level(level_runs))
    slow: dict[str, Any] | None = None
    if trickle is not None and trickle.clients > 0:
        slow_runs = []
        for n in range(runs):
            result = await one_run(ctx, trickle.clients, trickle.size, trickle)
            result["slow"] = True
            _progress("slow", n, result)
            slow_runs.append(result)
        raw.extend(slow_runs)
        slow = {**_summarize_level(slow_runs), "ideal_seconds": trickle.ideal_seconds}

    rows = [*fast, *([slow] if slow else [])]
    print_table(
        f"concurrency: median (min-max) of {runs} runs; upload time is per upload",
        ["uploads", "size", "MB/s total", "p50 s", "p99 s", "peak RSS MiB", "errors"],
        [
            [
                f"{r['concurrency']}{' slow' if r is slow else ''}",
                r["size_label"],
                r["aggregate_mb_s"],
                r["p50_seconds"],
                r["p99_seconds"],
                r["peak_rss_mib"],
                f"{r['errors']}/{r['uploads']}",
            ]
            for r in rows
        ],
    )
    if slow is not None and trickle is not None:
        print(
            f"slow clients: {trickle.chunk} B every {trickle.interval:g} s, "
            f"at best {trickle.ideal_seconds:.2f} s per upload"
        )
    doc = await asyncio.to_thread(
        write_result,
        ctx.out,
        "concurrency",
        ctx.label,
        {
            "environment": environment,
            "config": {
                "levels": levels,
                "sizes": sizes,
                "runs": runs,
                "trickle": None if trickle is None else asdict(trickle),
                "open_files_limit": files_limit,
                "source": ctx.source,
            },
            "summary": {"fast": fast, "slow": slow},
            "runs": raw,
        },
    )
    if ctx.plot:
        await asyncio.to_thread(plots.concurrency, doc, ctx.out)
    return doc


def _progress(kind: str, n: int, result: dict[str, Any]) -> None:
    p99 = result["p99_seconds"]
    print(
        f"  {kind} {result['concurrency']:>5} x {size_label(result['size']):>6} run {n + 1}: "
        f"{result['aggregate_mb_s']:7.1f} MB/s, p99 {p99 if p99 is None else round(p99, 2)} s, "
        f"peak RSS {result['peak_rss'] / MiB:.0f} MiB, errors {result['errors']}",
        flush=True,
    )
