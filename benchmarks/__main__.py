"""`python -m benchmarks NAME`: throughput, fixedcost, memory, concurrency, latency, consumers,
peer, all; profile, faults and fuzz run only by name.

Runs against the stack named by the environment (`eval "$(ingest stack env)"`),
in the bucket `bench` and topics `bench.*` (created when missing), prints a
table per benchmark and writes `bench-results/<name>[-<label>].json` and
`.png`. `faults` (not part of `all`) kills a private Kafka broker under uploads.
`--server-source DIR` serves another copy of the code (e.g. a
checkout of the commit before a change) for before/after figures.
Exit status 0, or 1 with the reason on stderr when a benchmark fails.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from benchmarks import (
    concurrency,
    consumers,
    faults,
    fixedcost,
    latency,
    memory,
    peer,
    profiling,
    throughput,
)
from benchmarks.context import Context, stack_pids
from benchmarks.environment import bench_settings, provision
from benchmarks.process import raise_open_files_limit
from benchmarks.report import write_result
from benchmarks.workload import KiB
from infra.env import SettingsError, size
from ingest.settings import IngestSettings

BENCHMARKS = ("throughput", "fixedcost", "memory", "concurrency", "latency", "consumers", "peer")


def _sizes(text: str) -> list[int]:
    return [size(s, "size") for s in text.split(",") if s.strip()]


def _pair(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise ValueError(f"--server-env wants NAME=VALUE, not {text!r}")
    return name, value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("which", choices=[*BENCHMARKS, "all", "profile", "faults", "fuzz"])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median, min, max)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--label", default=None, help="result files become <name>-<label>.json")
    parser.add_argument("--server-source", type=Path, default=None, help="serve the code in DIR")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the server, e.g. INGEST_PARTS_IN_FLIGHT=8 (repeatable)",
    )
    parser.add_argument("--no-plots", action="store_true")
    group = parser.add_argument_group("throughput")
    group.add_argument("--sizes", default=throughput.DEFAULT_SIZES, help="file sizes")
    group = parser.add_argument_group("fixedcost (small files, one after another)")
    group.add_argument("--fixed-sizes", default=fixedcost.DEFAULT_SIZES, help="file sizes")
    group.add_argument(
        "--fixed-count", type=int, default=fixedcost.DEFAULT_COUNT, help="uploads of each size"
    )
    group.add_argument(
        "--baseline-source",
        type=Path,
        default=None,
        help="also serve the code in DIR, its uploads interleaved with ours",
    )
    group = parser.add_argument_group("peer (tusd beside our tus and PUT)")
    group.add_argument("--peer-size", default=peer.DEFAULT_SIZE, help="file size")
    group = parser.add_argument_group("memory")
    group.add_argument("--memory-size", default=memory.DEFAULT_SIZE)
    group = parser.add_argument_group("concurrency")
    group.add_argument("--levels", default=concurrency.DEFAULT_LEVELS, help="concurrent uploads")
    group.add_argument(
        "--level-sizes", default=concurrency.DEFAULT_SIZES, help="size per upload, per level"
    )
    group.add_argument("--slow-clients", type=int, default=1000, help="0 skips the slow clients")
    group.add_argument("--slow-size", default="256KiB")
    group.add_argument("--slow-chunk", default="4KiB")
    group.add_argument("--slow-interval", type=float, default=0.05, help="seconds between chunks")
    group = parser.add_argument_group("latency")
    group.add_argument("--latency-uploads", type=int, default=4, help="concurrent uploads")
    group.add_argument(
        "--latency-clients", default=latency.DEFAULT_CLIENTS, help="WebSocket clients, per figure"
    )
    group.add_argument(
        "--latency-rate",
        type=float,
        default=latency.DEFAULT_RATE,
        help="MB/s each upload is sent at (0: full speed)",
    )
    group.add_argument("--latency-size", default=latency.DEFAULT_SIZE)
    group = parser.add_argument_group("consumers")
    group.add_argument("--consumer-events", type=int, default=5000, help="backlog to consume")
    group.add_argument("--consumer-users", type=int, default=50)
    group.add_argument("--consumer-rate", type=float, default=200, help="steady events per s")
    group.add_argument("--consumer-seconds", type=float, default=10, help="of steady publishing")
    group.add_argument(
        "--video-seconds", type=float, default=60, help="length of the 720p clip detection analyses"
    )
    group = parser.add_argument_group("profile")
    group.add_argument("--profile-size", default="1GiB")
    group.add_argument("--profile-rate", type=int, default=250, help="samples per second")
    group = parser.add_argument_group("faults")
    group.add_argument("--outage", type=float, default=60, help="seconds the broker stays down")
    group.add_argument("--fault-uploads", type=int, default=20, help="throttled uploads")
    group.add_argument("--fault-size", default="50MiB")
    group.add_argument("--fault-seconds", type=float, default=30, help="to send each body")
    group = parser.add_argument_group("fuzz (exit status 1 on any finding)")
    group.add_argument("--minutes", type=float, default=10, help="of fuzzing")
    group.add_argument("--examples", type=int, default=5000, help="cases per operation, at most")
    group.add_argument("--seed", type=int, default=None, help="repeat a run's cases")
    return parser


async def _run(args: argparse.Namespace) -> int:
    settings = bench_settings()
    await provision(settings)
    if args.which == "fuzz":
        return await _fuzz(settings, args)
    ctx = Context(
        settings=settings,
        out=args.out,
        label=args.label,
        source=args.server_source.resolve() if args.server_source else None,
        plot=not args.no_plots,
        stack_pids=await asyncio.to_thread(stack_pids, settings),
        extra_env=dict(_pair(text) for text in args.server_env),
    )
    which = BENCHMARKS if args.which == "all" else (args.which,)
    for name in which:
        print(f"\n=== {name} ===", flush=True)
        await _one(name, ctx, args)
    return 0


async def _fuzz(settings: IngestSettings, args: argparse.Namespace) -> int:
    # Imported here: schemathesis is a development tool (the `dev` extra), not a benchmark one.
    from benchmarks import fuzz, fuzz_report

    result = await fuzz.run_fuzz(
        settings, seconds=args.minutes * 60, examples=args.examples, seed=args.seed
    )
    print(fuzz_report.describe(result))
    write_result(args.out, "fuzz", args.label, fuzz_report.as_document(result))
    return 0 if result.clean else 1


async def _one(name: str, ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    if name == "throughput":
        return await throughput.run(ctx, sizes=_sizes(args.sizes), runs=args.runs)
    if name == "fixedcost":
        baseline = args.baseline_source.resolve() if args.baseline_source else None
        return await fixedcost.run(
            ctx, sizes=_sizes(args.fixed_sizes), count=args.fixed_count, baseline=baseline
        )
    if name == "memory":
        return await memory.run(ctx, size=size(args.memory_size, "--memory-size"), runs=args.runs)
    if name == "concurrency":
        trickle = concurrency.Trickle(
            clients=args.slow_clients,
            size=size(args.slow_size, "--slow-size"),
            chunk=size(args.slow_chunk, "--slow-chunk") or KiB,
            interval=args.slow_interval,
        )
        return await concurrency.run(
            ctx,
            levels=[int(n) for n in args.levels.split(",")],
            sizes=_sizes(args.level_sizes),
            runs=args.runs,
            trickle=trickle,
        )
    if name == "latency":
        return await latency.run(
            ctx,
            clients=[int(n) for n in args.latency_clients.split(",")],
            rate=args.latency_rate,
            uploads=args.latency_uploads,
            size=size(args.latency_size, "--latency-size"),
            runs=args.runs,
        )
    if name == "peer":
        return await peer.run(ctx, size=size(args.peer_size, "--peer-size"), runs=args.runs)
    if name == "faults":
        return await faults.run(
            ctx,
            outage=args.outage,
            uploads=args.fault_uploads,
            size=size(args.fault_size, "--fault-size"),
            seconds=args.fault_seconds,
        )
    if name == "profile":
        return await profiling.run(
            ctx, size=size(args.profile_size, "--profile-size"), rate=args.profile_rate
        )
    return await consumers.run(
        ctx,
        events=args.consumer_events,
        users=args.consumer_users,
        rate=args.consumer_rate,
        seconds=args.consumer_seconds,
        runs=args.runs,
        video_seconds=args.video_seconds,
    )


def main() -> int:
    args = _parser().parse_args()
    # Before anything opens a socket; `ingest serve` children inherit the limit.
    raise_open_files_limit()
    try:
        status = asyncio.run(_run(args))
    except (SettingsError, RuntimeError, ValueError, OSError) as error:
        print(f"benchmarks: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
