"""The fixed cost of one upload: small files through `ingest serve` vs straight to S3.

Uploads `count` files of each size one after another, alternating between
the service (`PUT /v1/uploads/{id}` to a real `ingest serve`, its session
created beforehand and not timed) and a direct aiobotocore upload to the same
MinIO with a client kept warm (one `put_object` for a file that fits in a part,
else a multipart upload with the service's part size and parts in flight).
Every body is a distinct file (a video signature, then bytes unique to the
upload), so the service never answers one as a duplicate of another. The
difference between the two medians is what the service adds per upload (the
session's claim and end, its events, the duplicate index): its fixed cost.
The creation of the session (`POST /v1/uploads`) is reported beside it.
Then, the servers' requests interleaved the same way, the tus figures
(`tuscost`): a PATCH of 1 KiB onto an open tus upload, without and with
`Expect: 100-continue`, and a new tus upload of a 1 KiB file created and sent
in one PATCH.

A failed upload raises RuntimeError: a latency figure from a broken run would
be meaningless.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from aiobotocore.config import AioConfig

from benchmarks import tuscost
from benchmarks.client import Users, create_session, http_session
from benchmarks.context import Context, delete_objects
from benchmarks.environment import describe, secret_of
from benchmarks.process import ingest_server
from benchmarks.report import describe_machine, print_table, size_label, write_result
from benchmarks.stats import percentile, spread
from benchmarks.throughput import send_multipart
from benchmarks.tuscost import PATCH_SIZE, TusPaths, open_length
from benchmarks.workload import MP4_HEAD, MiB
from infra.s3 import open_s3, warm_session

DEFAULT_SIZES = "1KiB,1MiB"
DEFAULT_COUNT = 50


@dataclass(frozen=True)
class Sample:
    path: str
    size: int
    seconds: float


def distinct_body(size: int) -> bytes:
    """A video signature, then bytes no other upload has (a duplicate would end differently)."""
    if size < len(MP4_HEAD) + 16:
        raise ValueError(f"a body of {size} bytes cannot carry a video signature and a nonce")
    return MP4_HEAD + os.urandom(16) + bytes(size - len(MP4_HEAD) - 16)


async def measure(
    ctx: Context, sizes: list[int], count: int, baseline: Path | None = None
) -> list[Sample]:
    settings = ctx.settings
    auth = Users(secret_of(settings), 1).auth(0)
    samples: list[Sample] = []
    stored: list[str] = []
    config = AioConfig(max_pool_connections=settings.parts_in_flight * 2)
    env = ctx.server_env(max_file_size=max(*sizes, open_length(count)) + MiB)
    async with contextlib.AsyncExitStack() as stack:
        servers = {
            "service": await stack.enter_async_context(ingest_server(env, source=ctx.source))
        }
        if baseline is not None:
            servers["baseline"] = await stack.enter_async_context(
                ingest_server(env, source=baseline)
            )
        http = await stack.enter_async_context(http_session())
        s3 = await stack.enter_async_context(
            open_s3(await warm_session(), settings.s3_endpoint(), config)
        )

        async def direct(size: int) -> float:
            body = distinct_body(size)
            key = f"bench/fixedcost/{uuid.uuid4().hex}.mp4"
            started = time.perf_counter()
            if size <= settings.part_size:
                await s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=body)
            else:
                await send_multipart(s3, settings, key, size)
            elapsed = time.perf_counter() - started
            await s3.delete_object(Bucket=settings.s3_bucket, Key=key)
            return elapsed

        async def through(url: str, size: int) -> tuple[float, float]:
            """(seconds to create the session, seconds of the upload itself)."""
            body = distinct_body(size)
            created = time.perf_counter()
            upload_url = await create_session(http, url, auth, size)
            started = time.perf_counter()
            headers = {**auth, "Content-Type": "video/mp4"}
            async with http.put(upload_url, data=body, headers=headers) as put:
                answer = await put.json(content_type=None)
                if put.status != 201:
                    raise RuntimeError(f"an upload of {size} bytes failed: {answer}")
            elapsed = time.perf_counter() - started
            stored.append(str(answer["s3_key"]))
            return started - created, elapsed

        def drop(warming: int) -> None:
            del samples[warming:]

        async def one(path: str, size: int) -> None:
            if path == "direct":
                samples.append(Sample(path, size, await direct(size)))
                return
            creation, seconds = await through(servers[path].url, size)
            samples.append(Sample(f"create-{path}", size, creation))
            samples.append(Sample(path, size, seconds))

        tus = {path: TusPaths(http, server.url, auth) for path, server in servers.items()}

        async def one_tus(path: str) -> None:
            seconds = await tus[path].patch(os.urandom(PATCH_SIZE))
            samples.append(Sample(f"tus-patch-{path}", PATCH_SIZE, seconds))
            seconds = await tus[path].patch(os.urandom(PATCH_SIZE), expect=True)
            samples.append(Sample(f"tus-expect-patch-{path}", PATCH_SIZE, seconds))
            seconds = await tus[path].create_and_patch(distinct_body(PATCH_SIZE))
            samples.append(Sample(f"tus-create-patch-{path}", PATCH_SIZE, seconds))

        paths = ["direct", *servers]
        try:
            for size in sizes:
                warming = len(samples)
                await rotate(paths, count, partial(one, size=size), warmed=partial(drop, warming))
            for path in servers:
                await tus[path].open(open_length(count), partial(distinct_body, PATCH_SIZE))
            warming = len(samples)
            await rotate(list(servers), count, one_tus, warmed=partial(drop, warming))
        finally:
            for paths_of_one in tus.values():
                stored.extend(await paths_of_one.close())
            await delete_objects(settings, stored)
    return samples


async def rotate(
    paths: list[str],
    count: int,
    one: Callable[[str], Awaitable[None]],
    *,
    warmed: Callable[[], None],
) -> None:
    """Every path once to warm it (connections, the producer's metadata), `warmed()` (which
    drops what that measured), then `count` rounds of every path, the order rotating to
    spread drifting machine load over every path alike."""
    for path in paths:
        await one(path)
    warmed()
    for n in range(count):
        for path in paths[n % len(paths) :] + paths[: n % len(paths)]:
            await one(path)


def summarize(samples: list[Sample]) -> list[dict[str, Any]]:
    """One row per size: p50/p99 per path, and what each server adds to the direct upload."""
    rows = []
    samples = [s for s in samples if not s.path.startswith("tus-")]
    for size in sorted({s.size for s in samples}):

        def ms(path: str, size: int = size) -> list[float]:
            return [s.seconds * 1000 for s in samples if s.size == size and s.path == path]

        direct = ms("direct")
        row: dict[str, Any] = {
            "size": size,
            "size_label": size_label(size),
            "uploads": len(direct),
            "direct_p50_ms": percentile(direct, 50),
            "direct_p99_ms": percentile(direct, 99),
        }
        for path in ("service", "baseline"):
            times = ms(path)
            if not times:
                continue
            row |= {
                f"{path}_p50_ms": percentile(times, 50),
                f"{path}_p99_ms": percentile(times, 99),
                f"{path}_fixed_cost_p50_ms": percentile(times, 50) - row["direct_p50_ms"],
                f"{path}_fixed_cost_p99_ms": percentile(times, 99) - row["direct_p99_ms"],
                f"{path}_create_session_p50_ms": percentile(ms(f"create-{path}"), 50),
                f"{path}_ms": spread(times),
            }
        rows.append(row)
    return rows


async def run(
    ctx: Context, *, sizes: list[int], count: int, baseline: Path | None = None
) -> dict[str, Any]:
    """Measure and report; `baseline` serves another copy of the code beside this one."""
    environment = await asyncio.to_thread(describe, ctx.settings)
    print(describe_machine(environment))
    samples = await measure(ctx, sizes, count, baseline)
    rows = summarize(samples)
    paths = ["service", "baseline"] if baseline is not None else ["service"]
    headers = ["size", "path", "p50", "p99", "fixed cost p50", "fixed cost p99", "create p50"]
    table: list[list[object]] = []
    for r in rows:
        table.append([r["size_label"], "direct", *_ms(r, "direct_p50", "direct_p99"), "", "", ""])
        for path in paths:
            names = ("p50", "p99", "fixed_cost_p50", "fixed_cost_p99", "create_session_p50")
            table.append([r["size_label"], path, *_ms(r, *(f"{path}_{n}" for n in names))])
    print_table(f"fixed cost: {count} uploads of each size one after another, ms", headers, table)
    tus_rows = tuscost.summarize(lambda path: _times(samples, path), paths)
    print_table(
        f"tus, {size_label(tuscost.PATCH_SIZE)}: {count} PATCHes onto an open upload without, "
        f"{count} with Expect: 100-continue; "
        f"{count} uploads created and sent in one PATCH, ms",
        tuscost.TABLE_HEADERS,
        tuscost.table_rows(tus_rows),
    )
    return await asyncio.to_thread(
        write_result,
        ctx.out,
        "fixedcost",
        ctx.label,
        {
            "environment": environment,
            "config": {
                "sizes": sizes,
                "count": count,
                "source": ctx.source,
                "baseline": baseline,
            },
            "summary": rows,
            "tus": tus_rows,
            "samples": [asdict(s) for s in samples],
        },
    )


def _times(samples: list[Sample], path: str) -> list[float]:
    return [s.seconds * 1000 for s in samples if s.path == path]


def _ms(row: dict[str, Any], *names: str) -> list[str]:
    return [f"{row[f'{name}_ms']:.1f}" for name in names]
