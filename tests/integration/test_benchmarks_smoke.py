"""Every benchmark, end to end on tiny sizes, against the real stack: they run and report.

Not a measurement (the sizes are far too small for figures to mean anything):
it keeps `python -m benchmarks` working as the code around it changes. Each
benchmark starts real `ingest serve` processes on the module's own bucket and
topics and writes its JSON (and, with matplotlib installed, its PNG).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from benchmarks import (
    concurrency,
    consumers,
    fixedcost,
    latency,
    memory,
    peer,
    plots,
    throughput,
)
from benchmarks.context import Context, stack_pids
from benchmarks.workload import KiB, MiB
from ingest.settings import IngestSettings

pytestmark = pytest.mark.timeout(120)

CHECKOUT = Path(__file__).resolve().parents[2]
"""This checkout: the code a second server serves as a baseline."""


@pytest.fixture
def ctx(settings: IngestSettings, tmp_path: Path) -> Context:
    return Context(
        settings=settings,
        out=tmp_path,
        plot=plots.available(),
        stack_pids=stack_pids(settings),
    )


async def written(ctx: Context, name: str) -> dict[str, Any]:
    text = await asyncio.to_thread((ctx.out / f"{name}.json").read_text)
    document: dict[str, Any] = json.loads(text)
    assert document["benchmark"] == name
    machine = document["environment"]["machine"]
    assert machine["cores"] > 0
    assert machine["memory_bytes"] > 0
    versions = document["environment"]["versions"]
    for package in ("python", "aiohttp", "aiobotocore", "aiokafka", "kafka", "minio"):
        assert versions[package], package
    if ctx.plot:
        plot = await asyncio.to_thread((ctx.out / f"{name}.png").stat)
        assert plot.st_size > 0
    return document


def positive(spread: dict[str, Any]) -> None:
    assert 0 < spread["min"] <= spread["median"] <= spread["max"]


async def test_throughput(ctx: Context) -> None:
    await throughput.run(ctx, sizes=[2 * MiB], runs=1)
    document = await written(ctx, "throughput")
    [row] = document["summary"]
    positive(row["direct_mb_s"])
    positive(row["service_mb_s"])
    positive(row["server_peak_rss_mib"])
    assert row["ratio"] > 0
    assert row["cpu_seconds_per_gib"]["service"]["server"] > 0
    assert {run["path"] for run in document["runs"]} == {"direct", "service"}


async def test_fixedcost(ctx: Context) -> None:
    # One file in a single PUT, one just over a part (a multipart upload on both paths),
    # with a second server beside ours (here the same code) as the baseline.
    sizes = [KiB, ctx.settings.part_size + KiB]
    await fixedcost.run(ctx, sizes=sizes, count=3, baseline=CHECKOUT)
    text = await asyncio.to_thread((ctx.out / "fixedcost.json").read_text)
    document = json.loads(text)
    assert document["benchmark"] == "fixedcost"
    assert document["environment"]["machine"]["cores"] > 0
    rows = {row["size"]: row for row in document["summary"]}
    assert sorted(rows) == sizes
    for row in rows.values():
        assert row["uploads"] == 3
        assert row["direct_p50_ms"] > 0
        for path in ("service", "baseline"):
            assert 0 < row[f"{path}_p50_ms"] <= row[f"{path}_p99_ms"]
            assert row[f"{path}_create_session_p50_ms"] > 0
            fixed = row[f"{path}_p50_ms"] - row["direct_p50_ms"]
            assert row[f"{path}_fixed_cost_p50_ms"] == fixed
    paths = [(sample["path"], sample["size"]) for sample in document["samples"]]
    for path in ("direct", "service", "create-service", "baseline", "create-baseline"):
        assert [paths.count((path, size)) for size in sizes] == [3, 3]
    # The tus figures beside them: a 1 KiB PATCH onto an open upload (also after Expect),
    # and create + PATCH.
    tus = {row["path"]: row for row in document["tus"]}
    assert set(tus) == {"service", "baseline"}
    for path, row in tus.items():
        for measure in ("patch", "expect_patch", "create_patch"):
            assert row[f"{measure}_count"] == 3
            assert 0 < row[f"{measure}_p50_ms"] <= row[f"{measure}_p99_ms"]
            assert paths.count((f"tus-{measure.replace('_', '-')}-{path}", KiB)) == 3


async def test_memory(ctx: Context) -> None:
    await memory.run(ctx, size=4 * MiB, runs=1, interval=0.02)
    document = await written(ctx, "memory")
    summary = document["summary"]
    positive(summary["peak_rss_mib"])
    positive(summary["rss_at_10pct_mib"])
    positive(summary["mb_per_s"])
    assert summary["growth_mib"]["median"] >= 0
    [run] = document["runs"]
    assert run["rss"]
    assert run["sent"][-1][1] == 4 * MiB


async def test_concurrency(ctx: Context) -> None:
    trickle = concurrency.Trickle(clients=5, size=16 * KiB, chunk=4 * KiB, interval=0.02)
    await concurrency.run(ctx, levels=[1, 4], sizes=[MiB], runs=1, trickle=trickle)
    document = await written(ctx, "concurrency")
    summary = document["summary"]
    assert [row["concurrency"] for row in summary["fast"]] == [1, 4]
    for row in [*summary["fast"], summary["slow"]]:
        positive(row["aggregate_mb_s"])
        positive(row["p50_seconds"])
        positive(row["p99_seconds"])
        positive(row["peak_rss_mib"])
        assert row["errors"] == 0
    assert summary["slow"]["uploads"] == 5


async def test_latency(ctx: Context) -> None:
    # Two parts each, so each upload reports progress at least twice, to every client.
    await latency.run(ctx, clients=[3], uploads=2, size=16 * MiB, runs=1)
    document = await written(ctx, "latency")
    [row] = document["summary"]
    assert row["clients"] == 3
    assert row["deliveries"] == row["expected_deliveries"] >= 3 * 8
    positive(row["p50_ms"])
    positive(row["p99_ms"])
    assert "median" in row["kib_per_idle_connection"]
    [run] = document["runs"]
    assert run["ended_early"] == []
    assert run["kafka_hop_p99_ms_at_most"] > 0
    assert run["cpu_seconds"]["live"] > 0


async def test_consumers(ctx: Context) -> None:
    await consumers.run(ctx, events=40, users=4, rate=20, seconds=1, runs=1, video_seconds=2)
    text = await asyncio.to_thread((ctx.out / "consumers.json").read_text)
    document = json.loads(text)
    assert document["benchmark"] == "consumers"
    assert document["environment"]["machine"]["cores"] > 0
    summary = document["summary"]
    positive(summary["events_per_s"])
    positive(summary["lag_p50_ms"])
    [run] = document["runs"]
    assert run["events"] == 40
    assert run["steady_events"] == 20
    analysed = document["detection"]
    assert analysed["video"] == {"width": 1280, "height": 720, "fps": 30, "seconds": 2}
    positive(analysed["seconds_per_video_minute"])
    positive(analysed["decode_seconds_per_video_minute"])
    positive(analysed["cpu_seconds_per_video_minute"])
    positive(analysed["videos_per_minute"])
    assert analysed["workers"] >= 1


async def test_peer(ctx: Context) -> None:
    if await asyncio.to_thread(shutil.which, "go") is None:
        pytest.skip("the peer (tusd) is built with Go")
    await peer.run(ctx, size=6 * MiB, runs=1)
    document = await written(ctx, "peer")
    rows = {row["path"]: row for row in document["summary"]}
    assert set(rows) == {"tusd", "ingest-tus", "ingest-put"}
    for row in rows.values():
        positive(row["mib_s"])
        positive(row["server_cpu_s_per_gib"])
        positive(row["peak_rss_mib"])
    assert rows["tusd"]["ratio_to_tusd"] == 1.0
