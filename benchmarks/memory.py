"""Server memory during one large upload: RSS over time and over bytes sent.

Each run starts a fresh `ingest serve`, samples its RSS every 0.1 s while
one file (4 GiB by default) streams through it, and records how many bytes
the client had sent when. Growth is the largest RSS seen minus the RSS when
10% of the file had been sent: by then the buffers of a steady upload are
all allocated, so anything above that grows with the file, which a streaming
service must not do. A failed upload raises RuntimeError.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from typing import Any

from benchmarks import plots
from benchmarks.client import Users, create_session, http_session, upload
from benchmarks.context import Context, delete_objects
from benchmarks.environment import describe, secret_of
from benchmarks.process import ingest_server, rss_bytes, sampling_rss
from benchmarks.report import describe_machine, print_table, size_label, write_result
from benchmarks.stats import spread
from benchmarks.workload import MiB, video_body

DEFAULT_SIZE = "4GiB"


async def one_run(ctx: Context, size: int, interval: float) -> dict[str, Any]:
    env = ctx.server_env(max_file_size=size + MiB)
    users = Users(secret_of(ctx.settings), 1)
    sent: list[tuple[float, int]] = []
    async with ingest_server(env, source=ctx.source) as server, http_session() as http:
        upload_url = await create_session(http, server.url, users.auth(0), size)
        idle_rss = await asyncio.to_thread(rss_bytes, server.pid)
        async with sampling_rss(server.pid, interval) as rss:
            origin = rss.origin
            sent.append((time.monotonic() - origin, 0))

            def on_sent(total: int) -> None:
                sent.append((time.monotonic() - origin, total))

            outcome = await upload(
                http, upload_url, users.auth(0), video_body(size, on_sent=on_sent), size
            )
    if not outcome.ok or outcome.result is None:
        raise RuntimeError(f"upload of {size} bytes failed: {outcome.error}")
    await delete_objects(ctx.settings, [str(outcome.result["s3_key"])])
    return _analyse(rss.samples, sent, size, idle_rss, outcome.seconds)


def _analyse(
    samples: list[tuple[float, int]],
    sent: list[tuple[float, int]],
    size: int,
    idle_rss: int,
    seconds: float,
) -> dict[str, Any]:
    sent_times = [t for t, _ in sent]
    sent_bytes = [b for _, b in sent]
    tenth = sent_times[bisect.bisect_left(sent_bytes, size // 10)]
    # The first sample taken once 10% was sent (the last one if the upload was that quick).
    at_tenth = next((r for t, r in samples if t >= tenth), samples[-1][1])
    peak = max(r for _, r in samples)

    def sent_at(t: float) -> int:
        return sent_bytes[max(0, bisect.bisect_right(sent_times, t) - 1)]

    return {
        "size": size,
        "seconds": seconds,
        "mb_per_s": size / seconds / 1e6,
        "idle_rss": idle_rss,
        "rss_at_10pct": at_tenth,
        "peak_rss": peak,
        "growth": peak - at_tenth,
        "t_10pct": tenth,
        "rss": samples,
        "sent": _thin(sent, 2000),
        "rss_vs_sent": {"sent": [sent_at(t) for t, _ in samples], "rss": [r for _, r in samples]},
    }


def _thin(points: list[tuple[float, int]], at_most: int) -> list[tuple[float, int]]:
    """At most about `at_most` points, first and last kept: enough for a plot."""
    step = max(1, len(points) // at_most)
    thinned = points[::step]
    return thinned if thinned[-1] == points[-1] else [*thinned, points[-1]]


async def run(ctx: Context, *, size: int, runs: int, interval: float = 0.1) -> dict[str, Any]:
    environment = await asyncio.to_thread(describe, ctx.settings)
    print(describe_machine(environment))
    results = []
    for n in range(runs):
        result = await one_run(ctx, size, interval)
        print(
            f"  run {n + 1}: growth {result['growth'] / MiB:.1f} MiB, "
            f"peak {result['peak_rss'] / MiB:.0f} MiB, {result['mb_per_s']:.0f} MB/s",
            flush=True,
        )
        results.append(result)
    summary = {
        "size": size,
        "size_label": size_label(size),
        "growth_mib": spread([r["growth"] / MiB for r in results]),
        "peak_rss_mib": spread([r["peak_rss"] / MiB for r in results]),
        "rss_at_10pct_mib": spread([r["rss_at_10pct"] / MiB for r in results]),
        "idle_rss_mib": spread([r["idle_rss"] / MiB for r in results]),
        "mb_per_s": spread([r["mb_per_s"] for r in results]),
    }
    print_table(
        f"memory: server RSS during one {size_label(size)} upload, median (min-max) of {runs} runs",
        ["idle MiB", "at 10% MiB", "peak MiB", "growth MiB", "MB/s"],
        [
            [
                summary["idle_rss_mib"],
                summary["rss_at_10pct_mib"],
                summary["peak_rss_mib"],
                summary["growth_mib"],
                summary["mb_per_s"],
            ]
        ],
    )
    doc = await asyncio.to_thread(
        write_result,
        ctx.out,
        "memory",
        ctx.label,
        {
            "environment": environment,
            "config": {
                "size": size,
                "size_label": size_label(size),
                "runs": runs,
                "sample_interval": interval,
                "source": ctx.source,
            },
            "summary": summary,
            "runs": results,
        },
    )
    if ctx.plot:
        await asyncio.to_thread(plots.memory, doc, ctx.out)
    return doc
