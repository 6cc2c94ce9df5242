"""`python -m benchmarks throughput [--sizes 64MiB,1GiB] [--runs 3]` against the running stack."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
from pathlib import Path

from benchmarks import throughput
from ingest.provisioning import ensure_bucket, ensure_topics
from ingest.settings import ingest_settings_from_env, size
from schemas import Topics


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("which", choices=["throughput"])
    parser.add_argument("--sizes", default="64MiB,256MiB,1GiB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    settings = ingest_settings_from_env(
        {**os.environ, "S3_BUCKET": "bench", "INGEST_TOPIC_PREFIX": "bench."}
    )
    sizes = [size(s, "--sizes") for s in args.sizes.split(",")]

    async def run() -> list[throughput.Run]:
        await ensure_topics(settings.kafka_bootstrap_servers, Topics(settings.topic_prefix))
        await ensure_bucket(settings.s3_endpoint(), settings.s3_bucket)
        return await throughput.measure(settings, sizes, args.runs)

    results = asyncio.run(run())
    rows = throughput.summarize(results)
    print(f"machine: {os.cpu_count()} cores, {platform.python_version()}, {platform.machine()}")
    print(
        f"{'size':>8} {'direct MB/s':>12} {'service MB/s':>13} {'ratio':>6} {'server peak RSS':>16}"
    )
    for row in rows:
        print(
            f"{row['size_mib']:>6}Mi {row['direct_mb_s']:>12.1f} {row['service_mb_s']:>13.1f} "
            f"{row['ratio']:>6.2f} {row['server_peak_rss_mib']:>13.0f}MiB"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "throughput.json").write_text(
        json.dumps({"summary": rows, "runs": throughput.as_json(results)}, indent=2)
    )


if __name__ == "__main__":
    main()
