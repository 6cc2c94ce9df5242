"""Where `ingest serve` spends its time during one upload: py-spy attached to the real server.

`python -m benchmarks profile --size 1GiB` starts a server, attaches py-spy
(`--nonblocking`, so the server is not paused while sampled) for the length
of one upload, and writes the collapsed stacks (`profile[-label].txt`, for
flamegraph.pl or speedscope) and prints the functions that use the most
samples, by thread. py-spy is the `bench` extra; without it this raises
RuntimeError saying so.
"""

from __future__ import annotations

import asyncio
import collections
import re
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from benchmarks.client import Users, create_session, http_session, upload
from benchmarks.context import Context, delete_objects
from benchmarks.environment import describe, secret_of
from benchmarks.process import CpuMeter, ingest_server
from benchmarks.report import describe_machine, result_path, size_label, write_result
from benchmarks.workload import MiB, video_body

_LINE = re.compile(r":\d+\)")


def py_spy() -> str:
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError("py-spy is not installed: pip install -e '.[bench]'")
    return found


def summarize(collapsed: str, top: int = 25) -> dict[str, Any]:
    """Sample shares by thread, by function (self) and by function with callees (inclusive)."""
    threads: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        if not line.strip():
            continue
        stack, count_text = line.rsplit(" ", 1)
        count = int(count_text)
        frames = stack.split(";")
        total += count
        threads[re.sub(r"\(\d+\)", "", frames[0]).strip()] += count
        own[frames[-1]] += count
        # A function is counted once per sample, however deep it recurses.
        for frame in {_LINE.sub(")", f) for f in frames[1:]}:
            inclusive[frame] += count

    def shares(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(name, n / total * 100) for name, n in counter.most_common(top)] if total else []

    return {
        "samples": total,
        "threads_pct": shares(threads),
        "self_pct": shares(own),
        "inclusive_pct": shares(inclusive),
    }


async def run(ctx: Context, *, size: int, rate: int = 250) -> dict[str, Any]:
    environment = await asyncio.to_thread(describe, ctx.settings)
    print(describe_machine(environment))
    tool = await asyncio.to_thread(py_spy)
    await asyncio.to_thread(ctx.out.mkdir, parents=True, exist_ok=True)
    raw = result_path(ctx.out, "profile", ctx.label, ".txt")
    env = ctx.server_env(max_file_size=size + MiB)
    users = Users(secret_of(ctx.settings), 1)
    async with ingest_server(env, source=ctx.source) as server, http_session() as http:
        upload_url = await create_session(http, server.url, users.auth(0), size)
        spy = await asyncio.create_subprocess_exec(
            tool, "record", "--pid", str(server.pid), "--rate", str(rate), "--format", "raw",
            "--threads", "--nonblocking", "--output", str(raw),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await asyncio.sleep(1.0)  # py-spy needs a moment to attach
        cpu = CpuMeter(ctx.cpu_pids(server=server.pid))
        await cpu.start()
        outcome = await upload(http, upload_url, users.auth(0), video_body(size), size)
        used = await cpu.stop()
        spy.send_signal(signal.SIGINT)
        _, spy_errors = await spy.communicate()
    if not outcome.ok or outcome.result is None:
        raise RuntimeError(f"the profiled upload failed: {outcome.error}")
    await delete_objects(ctx.settings, [str(outcome.result["s3_key"])])
    if not await asyncio.to_thread(raw.exists):
        raise RuntimeError(f"py-spy wrote no profile: {spy_errors.decode(errors='replace')}")
    summary = summarize(await asyncio.to_thread(raw.read_text))
    mb_s = size / outcome.seconds / 1e6
    print(
        f"\nprofile of one {size_label(size)} upload ({mb_s:.0f} MB/s): "
        f"{summary['samples']} samples"
    )
    print("CPU seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in used.items()))
    for title, key in (
        ("threads", "threads_pct"),
        ("self", "self_pct"),
        ("inclusive", "inclusive_pct"),
    ):
        print(f"\n{title}:")
        for name, pct in summary[key]:
            print(f"  {pct:5.1f}%  {name}")
    print(f"\ncollapsed stacks: {raw}")
    return await asyncio.to_thread(
        write_result,
        ctx.out,
        "profile",
        ctx.label,
        {
            "environment": environment,
            "config": {"size": size, "rate": rate, "source": ctx.source},
            "mb_per_s": mb_s,
            "cpu_seconds": used,
            "summary": summary,
            "collapsed_stacks": raw,
        },
    )
