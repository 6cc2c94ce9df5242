"""Progress latency end to end: from ingest building a progress event to WebSocket clients.

A real `ingest serve` streams real uploads and emits their progress to Kafka;
a real live service (`ingest consume fanout`) reads it and pushes it to
WebSocket clients held by a probe process of their own (`benchmarks.wsprobe`),
100 and then 1,000 of them (`--latency-clients`). Every client watches every
upload (`?all=true`), so each event is one delivery per client. A delivery's
latency is its arrival at the client minus the event's `timestamp` (set when
ingest builds the event, before it goes to Kafka): the Kafka hop, the live
service and the WebSocket hop together. Producer, broker, live service and
clients share this machine and its clock.

Memory per idle connection: the live service's RSS with every client
connected and idle, minus its RSS before, divided by the clients. CPU per
delivery: the live service's CPU seconds while the uploads ran, divided by
the deliveries (a figure other load on the machine does not move much, where
the latencies do). The Kafka hop alone (the record's append time to the live
service's hub, from its `fanout_record_delay_seconds` histogram, so given as
the bucket bound it falls under) shows how much of the latency is before the
live service.

A failed upload, a probe that does not start, or no delivery at all raises
RuntimeError.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from benchmarks import plots
from benchmarks.client import Users, create_sessions, http_session, upload
from benchmarks.context import Context, delete_objects
from benchmarks.environment import describe, secret_of
from benchmarks.process import CpuMeter, fanout_server, ingest_server, rss_bytes
from benchmarks.report import describe_machine, print_table, size_label, write_result
from benchmarks.stats import percentile, spread
from benchmarks.workload import MiB, trickle_body, video_body

DEFAULT_SIZE = "64MiB"
DEFAULT_CLIENTS = "100,1000"
DEFAULT_RATE = 8.0
"""MB/s each upload is sent at: a dashboard's users upload over networks, not at disk speed."""
SETTLE_SECONDS = 2.0
DELAY_METRIC = "fanout_record_delay_seconds_bucket"


async def delay_buckets(http: Any, url: str) -> dict[float, float]:
    """The live service's histogram of record append -> hub: cumulative count per bound."""
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(DELAY_METRIC + "{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def bucket_percentile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The bucket bound (ms) under which `q` percent of the records between two scrapes fell."""
    counts = {bound: after.get(bound, 0.0) - before.get(bound, 0.0) for bound in after}
    total = counts.get(float("inf"), 0.0)
    if total <= 0:
        return float("nan")
    for bound in sorted(counts):
        if counts[bound] >= total * q / 100:
            return bound * 1000
    return float("inf")


@asynccontextmanager
async def ws_probe(url: str, clients: int, secret: str) -> AsyncIterator[dict[str, Any]]:
    """`clients` WebSocket clients in their own process; the dict fills in when the block ends."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.wsprobe",
        url,
        str(clients),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=1 << 30,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    result: dict[str, Any] = {"pid": process.pid}
    try:
        process.stdin.write(secret.encode() + b"\n")
        await process.stdin.drain()
        async with asyncio.timeout(180):
            line = await process.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"the WebSocket probe did not start (said {line[:300]!r})")
        yield result
        process.stdin.close()
        async with asyncio.timeout(120):
            result.update(json.loads(await process.stdout.readline()))
    finally:
        if not process.stdin.is_closing():
            process.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        await process.wait()


def body(size: int, rate: float) -> AsyncIterator[memoryview]:
    """The upload's body at `rate` MB/s (0: as fast as the machine goes)."""
    if rate <= 0:
        return video_body(size)
    return trickle_body(size, MiB, MiB / (rate * 1e6))


async def one_run(
    ctx: Context, clients: int, uploads: int, size: int, rate: float
) -> dict[str, Any]:
    settings = ctx.settings
    env = ctx.server_env(max_file_size=size + MiB)
    live_env = {
        **env,
        "FANOUT_MAX_CONNECTIONS": str(clients + 100),
        "FANOUT_LOOKBACK": "10s",
        "INGEST_LOG_LEVEL": "WARNING",
    }
    users = Users.for_uploads(secret_of(settings), uploads)
    async with (
        ingest_server(env, source=ctx.source) as server,
        fanout_server(live_env, source=ctx.source) as live,
        http_session() as http,
    ):
        before = await asyncio.to_thread(rss_bytes, live.pid)
        ws_url = live.url.replace("http://", "ws://") + "/ws/upload-progress"
        async with ws_probe(ws_url, clients, secret_of(settings)) as received:
            await asyncio.sleep(SETTLE_SECONDS)
            idle = await asyncio.to_thread(rss_bytes, live.pid)
            cpu = CpuMeter(ctx.cpu_pids(server=server.pid, live=live.pid, clients=received["pid"]))
            await cpu.start()
            hub_before = await delay_buckets(http, live.url)
            urls = await create_sessions(http, server.url, users, [size] * uploads)
            outcomes = await asyncio.gather(
                *(
                    upload(http, u, users.auth(i), video_body(size), size)
                    for i, u in enumerate(urls)
                )
            )
            await asyncio.sleep(SETTLE_SECONDS)  # the last events reach every client
            used = await cpu.stop()
            hub_after = await delay_buckets(http, live.url)
        busy = await asyncio.to_thread(rss_bytes, live.pid)
    failed = [o.error for o in outcomes if not o.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} uploads failed: {failed[:3]}")
    await delete_objects(settings, [str(o.result["s3_key"]) for o in outcomes if o.result])
    ours = {u.rsplit("/", 1)[1] for u in urls}
    mine = [d for d in received.get("deliveries", []) if d["session"] in ours]
    if not mine:
        raise RuntimeError("no upload event reached the WebSocket clients")
    latencies = [(d["received"] - d["timestamp"]) * 1000 for d in mine]
    events = len({(d["session"], d["timestamp"], d["type"]) for d in mine})
    return {
        "clients": clients,
        "uploads": uploads,
        "size": size,
        "rate_mb_s": rate,
        "events": events,
        "deliveries": len(latencies),
        "expected_deliveries": events * clients,
        "ended_early": received.get("ended_early", []),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "rss_before_mib": before / MiB,
        "rss_idle_mib": idle / MiB,
        "rss_after_mib": busy / MiB,
        "kib_per_idle_connection": (idle - before) / 1024 / clients,
        "kafka_hop_p50_ms_at_most": bucket_percentile(hub_before, hub_after, 50),
        "kafka_hop_p99_ms_at_most": bucket_percentile(hub_before, hub_after, 99),
        "cpu_seconds": used,
        "live_cpu_us_per_delivery": used.get("live", 0.0) * 1e6 / len(latencies),
        "latencies_ms": latencies,
    }


async def run(
    ctx: Context,
    *,
    clients: list[int],
    uploads: int,
    size: int,
    runs: int,
    rate: float = DEFAULT_RATE,
) -> dict[str, Any]:
    environment = await asyncio.to_thread(describe, ctx.settings)
    print(describe_machine(environment))
    results: list[dict[str, Any]] = []
    for count in clients:
        for n in range(runs):
            result = await one_run(ctx, count, uploads, size, rate)
            print(
                f"  {count} clients, run {n + 1}: {result['deliveries']} deliveries "
                f"(of {result['expected_deliveries']}), p50 {result['p50_ms']:.1f} ms, "
                f"p99 {result['p99_ms']:.1f} ms (Kafka hop p50 <= "
                f"{result['kafka_hop_p50_ms_at_most']:g} ms, p99 <= "
                f"{result['kafka_hop_p99_ms_at_most']:g} ms), "
                f"{result['kib_per_idle_connection']:.1f} KiB per idle connection",
                flush=True,
            )
            results.append(result)
    summary = [_summary(count, [r for r in results if r["clients"] == count]) for count in clients]
    print_table(
        f"latency: progress event built by ingest -> received by WebSocket clients "
        f"(Kafka, live service, WebSocket), {uploads} concurrent {size_label(size)} uploads "
        f"at {f'{rate:g} MB/s each' if rate > 0 else 'full speed'}, every client watching all; "
        f"median (min-max) of {runs} runs",
        ["clients", "deliveries", "p50 ms", "p99 ms", "max ms", "KiB/idle conn", "live CPU µs/msg"],
        [
            [
                row["clients"],
                row["deliveries"],
                row["p50_ms"],
                row["p99_ms"],
                row["max_ms"],
                row["kib_per_idle_connection"],
                row["live_cpu_us_per_delivery"],
            ]
            for row in summary
        ],
    )
    doc = await asyncio.to_thread(
        write_result,
        ctx.out,
        "latency",
        ctx.label,
        {
            "environment": environment,
            "config": {
                "clients": clients,
                "uploads": uploads,
                "size": size,
                "rate_mb_s": rate,
                "runs": runs,
                "source": ctx.source,
            },
            "summary": summary,
            "runs": results,
        },
    )
    if ctx.plot:
        await asyncio.to_thread(plots.latency, doc, ctx.out)
    return doc


def _summary(clients: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "clients": clients,
        "deliveries": sum(r["deliveries"] for r in results),
        "expected_deliveries": sum(r["expected_deliveries"] for r in results),
        "p50_ms": spread([r["p50_ms"] for r in results]),
        "p99_ms": spread([r["p99_ms"] for r in results]),
        "max_ms": spread([r["max_ms"] for r in results]),
        "kib_per_idle_connection": spread([r["kib_per_idle_connection"] for r in results]),
        "live_cpu_us_per_delivery": spread([r["live_cpu_us_per_delivery"] for r in results]),
    }
