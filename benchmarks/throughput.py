"""Single-stream throughput: one file through `ingest serve` vs straight to S3 with aiobotocore.

Both paths send the same bytes to the same MinIO with the same part size and
parts in flight; the server runs as its own process and its peak RSS is sampled.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig

from benchmarks.process import RssSampler, ingest_server
from benchmarks.workload import MiB, video_body
from ingest.adapters.s3_client import open_s3, warm_session
from ingest.auth import issue_token
from ingest.settings import IngestSettings

SECRET = "benchmark-secret-benchmark-secret-0123"


@dataclass(frozen=True)
class Run:
    path: str
    size: int
    seconds: float
    peak_rss: int | None = None

    @property
    def mb_per_s(self) -> float:
        return self.size / self.seconds / 1e6


async def direct_upload(settings: IngestSettings, size: int) -> Run:
    """A competent direct multipart upload: same part size and parallelism as the service."""
    key = f"bench/direct/{uuid.uuid4().hex}.mp4"
    config = AioConfig(max_pool_connections=settings.parts_in_flight * 2)
    async with open_s3(await warm_session(), settings.s3_endpoint(), config) as s3:
        started = time.monotonic()
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
        pending: list[bytes] = []
        held = 0
        number = 0
        async for chunk in video_body(size):
            pending.append(chunk)
            held += len(chunk)
            if held >= settings.part_size:
                number += 1
                await slots.acquire()
                tasks.append(asyncio.create_task(send(number, b"".join(pending))))
                pending, held = [], 0
        if pending:
            number += 1
            await slots.acquire()
            tasks.append(asyncio.create_task(send(number, b"".join(pending))))
        await asyncio.gather(*tasks)
        parts.sort(key=lambda p: p["PartNumber"])
        await s3.complete_multipart_upload(
            Bucket=settings.s3_bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )
        elapsed = time.monotonic() - started
        await s3.delete_object(Bucket=settings.s3_bucket, Key=key)
    return Run("direct", size, elapsed)


async def service_upload(url: str, token: str, size: int) -> float:
    auth = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.post(
            f"{url}/v1/uploads", json={"filename": "bench.mp4"}, headers=auth
        ) as r:
            session = await r.json()
        started = time.monotonic()
        async with http.put(
            f"{url}{session['upload_url']}",
            data=video_body(size),
            headers={**auth, "Content-Length": str(size), "Content-Type": "video/mp4"},
        ) as r:
            body = await r.json()
            if r.status != 201:
                raise RuntimeError(f"upload failed: {r.status} {body}")
        return time.monotonic() - started


async def measure(settings: IngestSettings, sizes: list[int], runs: int) -> list[Run]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
        "S3_BUCKET": settings.s3_bucket,
        "INGEST_TOPIC_PREFIX": settings.topic_prefix,
        "INGEST_JWT_SECRET": SECRET,
        "INGEST_MAX_FILE_SIZE": str(max(sizes) + MiB),
        "INGEST_QUOTA_BYTES": str(10 * max(sizes) * runs + MiB),
    }
    results: list[Run] = []
    async with ingest_server(env) as server:
        token = issue_token(SECRET, f"bench-{uuid.uuid4().hex[:6]}", ttl_seconds=86400)
        for size in sizes:
            for _ in range(runs):
                results.append(await direct_upload(settings, size))
                sampler = RssSampler(server.pid)
                sampling = asyncio.create_task(sampler.run())
                try:
                    seconds = await service_upload(server.url, token, size)
                finally:
                    sampling.cancel()
                results.append(Run("service", size, seconds, sampler.peak))
    return results


def summarize(results: list[Run]) -> list[dict[str, Any]]:
    rows = []
    for size in sorted({r.size for r in results}):
        direct = [r.mb_per_s for r in results if r.size == size and r.path == "direct"]
        service = [r.mb_per_s for r in results if r.size == size and r.path == "service"]
        rss = [r.peak_rss or 0 for r in results if r.size == size and r.path == "service"]
        rows.append(
            {
                "size_mib": size // MiB,
                "direct_mb_s": statistics.median(direct),
                "direct_min_max": (min(direct), max(direct)),
                "service_mb_s": statistics.median(service),
                "service_min_max": (min(service), max(service)),
                "ratio": statistics.median(service) / statistics.median(direct),
                "server_peak_rss_mib": max(rss) / MiB,
            }
        )
    return rows


def as_json(results: list[Run]) -> list[dict[str, Any]]:
    return [{**asdict(r), "mb_per_s": r.mb_per_s} for r in results]
