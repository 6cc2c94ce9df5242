"""Single-stream throughput: one file through `ingest serve` vs straight to S3 with aiobotocore.

Both paths send the same bytes to the same MinIO with the same part size and
parts in flight. The direct path is a plain aiobotocore client with its
default configuration (as a user would write it: botocore then adds a CRC32
and signs the payload with SHA-256, so it hashes every byte once, as the
service must). The two paths alternate within each run so drifting machine
load hits both alike. For each upload the CPU seconds of the server, this
client, MinIO and Kafka are recorded: on a small machine they all share the
same cores, and that is where the time goes.

A failed upload raises (RuntimeError or the client's own error): a throughput
figure from a broken run would be meaningless.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from aiobotocore.config import AioConfig

from benchmarks import plots
from benchmarks.client import Users, create_session, http_session, upload
from benchmarks.context import Context, delete_objects
from benchmarks.environment import describe, secret_of
from benchmarks.process import CpuMeter, ingest_server, sampling_rss
from benchmarks.report import describe_machine, print_table, size_label, write_result
from benchmarks.stats import spread
from benchmarks.workload import MiB, part_bytes, video_body
from infra.s3 import open_s3, warm_session
from ingest.settings import IngestSettings

DEFAULT_SIZES = "64MiB,256MiB,1GiB,4GiB"


@dataclass(frozen=True)
class Run:
    path: str
    size: int
    seconds: float
    peak_rss: int | None = None
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def mb_per_s(self) -> float:
        return self.size / self.seconds / 1e6


async def direct_upload(settings: IngestSettings, size: int, cpu: CpuMeter) -> Run:
    """A competent direct multipart upload: same part size and parallelism as the service."""
    key = f"bench/direct/{uuid.uuid4().hex}.mp4"
    config = AioConfig(max_pool_connections=settings.parts_in_flight * 2)
    async with open_s3(await warm_session(), settings.s3_endpoint(), config) as s3:
        await cpu.start()
        started = time.monotonic()
        await send_multipart(s3, settings, key, size)
        elapsed = time.monotonic() - started
        used = await cpu.stop()
        await s3.delete_object(Bucket=settings.s3_bucket, Key=key)
    return Run("direct", size, elapsed, cpu=used)


async def send_multipart(s3: Any, settings: IngestSettings, key: str, size: int) -> None:
    """`size` bytes of the benchmark body to `key`, as the service would: parts of its part size,
    its parts in flight at once."""
    created = await s3.create_multipart_upload(Bucket=settings.s3_bucket, Key=key)
    upload_id = created["UploadId"]
    slots = asyncio.Semaphore(settings.parts_in_flight)
    parts: list[dict[str, Any]] = []

    async def send(number: int, data: bytes) -> None:
        try:
            response = await s3.upload_part(
                Bucket=settings.s3_bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
            )
            parts.append({"PartNumber": number, "ETag": response["ETag"]})
        finally:
            slots.release()

    tasks = []
    for number, offset in enumerate(range(0, size, settings.part_size), 1):
        await slots.acquire()
        data = part_bytes(offset, min(settings.part_size, size - offset))
        tasks.append(asyncio.create_task(send(number, data)))
        del data
    await asyncio.gather(*tasks)
    parts.sort(key=lambda p: p["PartNumber"])
    await s3.complete_multipart_upload(
        Bucket=settings.s3_bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": parts},
    )


async def service_upload(
    url: str, users: Users, size: int, server_pid: int, cpu: CpuMeter
) -> tuple[Run, str]:
    """One upload through the service; the run and the key it was stored under."""
    async with http_session() as http:
        upload_url = await create_session(http, url, users.auth(0), size)
        async with sampling_rss(server_pid) as rss:
            await cpu.start()
            outcome = await upload(http, upload_url, users.auth(0), video_body(size), size)
            used = await cpu.stop()
    if not outcome.ok or outcome.result is None:
        raise RuntimeError(f"upload of {size} bytes failed: {outcome.error}")
    return Run("service", size, outcome.seconds, rss.peak, used), str(outcome.result["s3_key"])


async def measure(ctx: Context, sizes: list[int], runs: int) -> list[Run]:
    settings = ctx.settings
    env = ctx.server_env(max_file_size=max(sizes) + MiB)
    users = Users(secret_of(settings), 1)
    results: list[Run] = []
    async with ingest_server(env, source=ctx.source) as server:
        for size in sizes:
            for n in range(runs):
                # Alternating which path goes first cancels out a slow start or a warming cache.
                order = ("direct", "service") if n % 2 == 0 else ("service", "direct")
                for path in order:
                    if path == "direct":
                        run = await direct_upload(settings, size, CpuMeter(ctx.cpu_pids()))
                    else:
                        meter = CpuMeter(ctx.cpu_pids(server=server.pid))
                        run, key = await service_upload(server.url, users, size, server.pid, meter)
                        await delete_objects(settings, [key])
                    results.append(run)
                    print(
                        f"  {path:>7} {size_label(size):>7} run {n + 1}: {run.mb_per_s:7.1f} MB/s",
                        flush=True,
                    )
    return results


def summarize(results: list[Run]) -> list[dict[str, Any]]:
    rows = []
    for size in sorted({r.size for r in results}):
        direct = [r for r in results if r.size == size and r.path == "direct"]
        service = [r for r in results if r.size == size and r.path == "service"]
        direct_mb_s = spread([r.mb_per_s for r in direct])
        service_mb_s = spread([r.mb_per_s for r in service])
        rows.append(
            {
                "size": size,
                "size_label": size_label(size),
                "direct_mb_s": direct_mb_s,
                "service_mb_s": service_mb_s,
                "ratio": service_mb_s.median / direct_mb_s.median,
                "server_peak_rss_mib": spread([(r.peak_rss or 0) / MiB for r in service]),
                "cpu_seconds_per_gib": {
                    "direct": _cpu_per_gib(direct),
                    "service": _cpu_per_gib(service),
                },
            }
        )
    return rows


def _cpu_per_gib(runs: list[Run]) -> dict[str, float]:
    """Median CPU seconds per GiB uploaded, per process (and for the whole machine)."""
    names = sorted({name for r in runs for name in r.cpu if name != "wall"})
    return {
        name: spread([r.cpu.get(name, 0.0) / (r.size / 2**30) for r in runs]).median
        for name in names
    }


async def run(ctx: Context, *, sizes: list[int], runs: int) -> dict[str, Any]:
    environment = await asyncio.to_thread(describe, ctx.settings)
    print(describe_machine(environment))
    results = await measure(ctx, sizes, runs)
    rows = summarize(results)
    print_table(
        f"throughput: one upload at a time, median (min-max) of {runs} runs",
        ["size", "direct MB/s", "service MB/s", "ratio", "server peak RSS MiB"],
        [
            [
                r["size_label"],
                r["direct_mb_s"],
                r["service_mb_s"],
                r["ratio"],
                r["server_peak_rss_mib"],
            ]
            for r in rows
        ],
    )
    _print_cpu(rows)
    doc = await asyncio.to_thread(
        write_result,
        ctx.out,
        "throughput",
        ctx.label,
        {
            "environment": environment,
            "config": {"sizes": sizes, "runs": runs, "source": ctx.source},
            "summary": rows,
            "runs": [{**asdict(r), "mb_per_s": r.mb_per_s} for r in results],
        },
    )
    if ctx.plot:
        await asyncio.to_thread(plots.throughput, doc, ctx.out)
    return doc


def _print_cpu(rows: list[dict[str, Any]]) -> None:
    names = ["server", "client", "minio", "kafka", "machine_busy"]
    table = []
    for row in rows:
        for path in ("direct", "service"):
            used = row["cpu_seconds_per_gib"][path]
            table.append(
                [row["size_label"], path, *(f"{used[n]:.2f}" if n in used else "-" for n in names)]
            )
    print_table(
        "where the CPU goes: CPU seconds per GiB uploaded (median); all share the same cores",
        ["size", "path", *names],
        table,
    )
