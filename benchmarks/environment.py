"""What a benchmark ran on and against: machine, versions, stack settings, server environment.

Every result file carries `describe()`, so a figure can always be traced to
the cores, memory, CPU model and library versions that produced it. Reading
the machine never fails (unknown values are recorded as None); `bench_settings`
raises SettingsError for a malformed environment variable, like the service.
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from deploy.stack.kafka import KAFKA_VERSION
from deploy.stack.minio import MINIO_VERSION
from infra.provisioning import ensure_bucket, ensure_topics
from ingest.settings import IngestSettings, ingest_settings_from_env
from schemas import Topics

BENCH_SECRET: Final = "benchmark-secret-benchmark-secret-0123"
"""Signs the benchmark's tokens when the settings name no JWT secret."""

_PACKAGES: Final = ("aiohttp", "aiobotocore", "botocore", "aiokafka", "msgspec", "matplotlib")


def bench_settings(environ: Mapping[str, str] | None = None) -> IngestSettings:
    """The stack from the environment, with the benchmark's own bucket and topics."""
    env = dict(os.environ if environ is None else environ)
    env.setdefault("INGEST_JWT_SECRET", BENCH_SECRET)
    env["S3_BUCKET"] = env.get("BENCH_S3_BUCKET", "bench")
    env["INGEST_TOPIC_PREFIX"] = env.get("BENCH_TOPIC_PREFIX", "bench.")
    return ingest_settings_from_env(env)


async def provision(settings: IngestSettings) -> None:
    await ensure_topics(settings.kafka_bootstrap_servers, Topics(settings.topic_prefix))
    await ensure_bucket(settings.s3_endpoint(), settings.s3_bucket)


def server_env(
    settings: IngestSettings, *, max_file_size: int, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of an `ingest serve` for benchmarks: no quota or size limit in the way."""
    env: dict[str, str | None] = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
        "S3_BUCKET": settings.s3_bucket,
        "AWS_ACCESS_KEY_ID": settings.aws_access_key_id,
        "AWS_SECRET_ACCESS_KEY": settings.aws_secret_access_key,
        "AWS_REGION": settings.aws_region,
        "INGEST_TOPIC_PREFIX": settings.topic_prefix,
        "INGEST_JWT_SECRET": secret_of(settings),
        "INGEST_MAX_FILE_SIZE": str(max_file_size),
        # The benchmarks measure the data path; quotas would refuse them long
        # before (100 uploads per user per period by default).
        "INGEST_QUOTA_BYTES": str(1 << 50),
        "INGEST_QUOTA_UPLOADS": "100000000",
    }
    # Unset credentials stay unset: the server then finds them as the AWS SDK would.
    return {**{k: v for k, v in env.items() if v is not None}, **(extra or {})}


def secret_of(settings: IngestSettings) -> str:
    return settings.jwt_secret or BENCH_SECRET


def describe(settings: IngestSettings) -> dict[str, Any]:
    """Machine, versions and service settings, for the result files."""
    return {
        "machine": machine(),
        "versions": versions(),
        "service": {
            "part_size": settings.part_size,
            "parts_in_flight": settings.parts_in_flight,
            "memory_budget": settings.memory_budget,
            "progress_interval_seconds": settings.progress_interval_seconds,
        },
    }


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "memory_bytes": _meminfo_total(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "load_average": os.getloadavg(),
    }


def versions() -> dict[str, Any]:
    found: dict[str, Any] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    found["kafka"] = KAFKA_VERSION
    found["minio"] = MINIO_VERSION
    found["source"] = _git_describe()
    return found


def _cpu_model() -> str | None:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None


def _meminfo_total() -> int | None:
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def _git_describe() -> str | None:
    """The commit the code came from, `-dirty` when the tree has local changes."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None
