"""Progress latency: from the service emitting a progress event to a consumer receiving it.

The dashboard sees progress through Kafka and the live (fan-out) service's
WebSocket. The live service does not exist yet, so this measures the part
that does: `ce_time` (set when the service builds the event) to receipt by a
Kafka consumer (`benchmarks.probe`, in its own process) reading the progress
topic, for the progress events of real uploads streaming through a real
`ingest serve`. The WebSocket hop is not measured, and the output says so.
Producer and consumer run on this machine, so they share one clock.

A failed upload raises RuntimeError; so does a probe that does not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from benchmarks import plots
from benchmarks.client import Users, create_sessions, http_session, upload
from benchmarks.context import Context, delete_objects
from benchmarks.environment import describe, secret_of
from benchmarks.process import ingest_server
from benchmarks.report import describe_machine, print_table, size_label, write_result
from benchmarks.stats import percentile, spread
from benchmarks.workload import MiB, video_body
from schemas import Topics

NOT_MEASURED = (
    "The WebSocket hop (live service -> browser) is not measured yet: there is no live "
    "service. Figures are ce_time -> Kafka consumer receive."
)
DEFAULT_SIZE = "256MiB"
FETCH_MAX_WAIT_MS = 100


@asynccontextmanager
async def kafka_probe(bootstrap: str, topic: str) -> AsyncIterator[list[dict[str, Any]]]:
    """Records of `topic` as the probe process receives them, from now until exit."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.probe",
        bootstrap,
        topic,
        str(FETCH_MAX_WAIT_MS),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stdin is not None
    records: list[dict[str, Any]] = []
    reader: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(60):
            line = await process.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"the Kafka probe did not start (said {line!r})")

        async def collect(stdout: asyncio.StreamReader) -> None:
            async for raw in stdout:
                records.append(json.loads(raw))

        reader = asyncio.create_task(collect(process.stdout))
        yield records
    finally:
        process.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        await process.wait()
        if reader is not None:
            await reader


async def one_run(ctx: Context, uploads: int, size: int) -> dict[str, Any]:
    settings = ctx.settings
    env = ctx.server_env(max_file_size=size + MiB)
    users = Users.for_uploads(secret_of(settings), uploads)
    topic = Topics(settings.topic_prefix).progress
    async with (
        ingest_server(env, source=ctx.source) as server,
        http_session() as http,
        kafka_probe(settings.kafka_bootstrap_servers, topic) as records,
    ):
        urls = await create_sessions(http, server.url, users, [size] * uploads)
        outcomes = await asyncio.gather(
            *(upload(http, u, users.auth(i), video_body(size), size) for i, u in enumerate(urls))
        )
        await _until_quiet(records)
    failed = [o.error for o in outcomes if not o.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} uploads failed: {failed[:3]}")
    await delete_objects(settings, [str(o.result["s3_key"]) for o in outcomes if o.result])
    ours = {u.rsplit("/", 1)[1] for u in urls}
    mine = [r for r in records if r["key"] in ours]
    latencies = [(r["received"] - r["ce_time"]) * 1000 for r in mine]
    if not latencies:
        raise RuntimeError("no progress event of the uploads reached the probe")
    return {
        "uploads": uploads,
        "size": size,
        "events": len(latencies),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "latencies_ms": latencies,
    }


async def _until_quiet(
    records: list[dict[str, Any]], quiet: float = 1.5, within: float = 15
) -> None:
    """Wait until no record has arrived for `quiet` seconds (the last events are in)."""
    deadline = time.monotonic() + within
    seen, last_change = len(records), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - last_change < quiet:
        await asyncio.sleep(0.1)
        if len(records) != seen:
            seen, last_change = len(records), time.monotonic()


async def run(ctx: Context, *, uploads: int, size: int, runs: int) -> dict[str, Any]:
    environment = await asyncio.to_thread(describe, ctx.settings)
    print(describe_machine(environment))
    print(NOT_MEASURED)
    results = []
    for n in range(runs):
        result = await one_run(ctx, uploads, size)
        print(
            f"  run {n + 1}: {result['events']} events, p50 {result['p50_ms']:.1f} ms, "
            f"p99 {result['p99_ms']:.1f} ms",
            flush=True,
        )
        results.append(result)
    summary = {
        "p50_ms": spread([r["p50_ms"] for r in results]),
        "p99_ms": spread([r["p99_ms"] for r in results]),
        "max_ms": spread([r["max_ms"] for r in results]),
        "events": sum(r["events"] for r in results),
        "websocket_hop_measured": False,
    }
    print_table(
        f"latency: progress event ce_time -> Kafka consumer, {uploads} concurrent "
        f"{size_label(size)} uploads, median (min-max) of {runs} runs",
        ["events", "p50 ms", "p99 ms", "max ms"],
        [[summary["events"], summary["p50_ms"], summary["p99_ms"], summary["max_ms"]]],
    )
    print(NOT_MEASURED)
    doc = await asyncio.to_thread(
        write_result,
        ctx.out,
        "latency",
        ctx.label,
        {
            "environment": environment,
            "note": NOT_MEASURED,
            "config": {
                "uploads": uploads,
                "size": size,
                "runs": runs,
                "consumer_fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
                "source": ctx.source,
            },
            "summary": summary,
            "runs": results,
        },
    )
    if ctx.plot:
        await asyncio.to_thread(plots.latency, doc, ctx.out)
    return doc
