"""Bring the local stack up and down, and say what is running.

State (pids, ports, log paths) is one JSON file in the state directory, so
`up` run twice finds the running stack and returns it, and `down` can stop it
from any shell. Data lives in the state directory, which `down` removes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from deploy.stack import kafka, minio, process
from deploy.stack.errors import StackError

_STATE_FILE = "stack.json"


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap_servers: str
    s3_endpoint_url: str
    aws_access_key_id: str
    aws_secret_access_key: str
    aws_region: str = "us-east-1"

    def environment(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "S3_ENDPOINT_URL": self.s3_endpoint_url,
            "AWS_ACCESS_KEY_ID": self.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.aws_secret_access_key,
            "AWS_REGION": self.aws_region,
        }


@dataclass(frozen=True)
class _Service:
    pid: int
    port: int
    log: str


@dataclass(frozen=True)
class _State:
    state_dir: str
    kafka: _Service
    minio: _Service

    def endpoints(self) -> Endpoints:
        return Endpoints(
            kafka_bootstrap_servers=f"127.0.0.1:{self.kafka.port}",
            s3_endpoint_url=f"http://127.0.0.1:{self.minio.port}",
            aws_access_key_id=minio.ACCESS_KEY,
            aws_secret_access_key=minio.SECRET_KEY,
        )


def default_state_dir() -> Path:
    configured = os.environ.get("INGEST_STACK_DIR")
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"ingest-stack-{os.getuid()}"


def default_cache_dir() -> Path:
    configured = os.environ.get("INGEST_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ingest-stack"


def up(
    state_dir: Path,
    *,
    cache_dir: Path,
    kafka_port: int = 9092,
    minio_port: int = 9000,
) -> Endpoints:
    """Start Kafka and MinIO (installing them on first use) and wait until both answer.

    Harmless when the stack in `state_dir` is already running: it is returned as is.
    """
    running = _running_state(state_dir)
    if running is not None:
        return running.endpoints()
    down(state_dir)  # clears a half-dead earlier stack and its data
    for port, name in ((kafka_port, "Kafka"), (minio_port, "MinIO")):
        if process.port_open(port):
            raise StackError(f"port {port} for {name} is already taken by another process")

    libs = kafka.ensure_jars(cache_dir)
    binary = minio.ensure_binary(cache_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    marker = str(state_dir)
    controller_port = process.free_port()
    console_port = process.free_port()

    kafka_pid, kafka_log = kafka.start(
        libs=libs, state_dir=state_dir, port=kafka_port, controller_port=controller_port
    )
    minio_pid, minio_log = minio.start(
        binary=binary, state_dir=state_dir, port=minio_port, console_port=console_port
    )
    state = _State(
        state_dir=str(state_dir),
        kafka=_Service(kafka_pid, kafka_port, str(kafka_log)),
        minio=_Service(minio_pid, minio_port, str(minio_log)),
    )
    (state_dir / _STATE_FILE).write_text(json.dumps(asdict(state), indent=2))
    try:
        minio.wait_ready(pid=minio_pid, marker=marker, port=minio_port, log=minio_log)
        kafka.wait_ready(pid=kafka_pid, marker=marker, port=kafka_port, log=kafka_log)
    except StackError:
        down(state_dir)
        raise
    return state.endpoints()


def down(state_dir: Path) -> bool:
    """Stop every process of the stack and delete its data; True when something was running."""
    state = _read_state(state_dir)
    stopped = False
    if state is not None:
        for service in (state.kafka, state.minio):
            if process.is_running(service.pid, str(state_dir)):
                process.stop(service.pid, str(state_dir))
                stopped = True
    if state_dir.exists():
        shutil.rmtree(state_dir, ignore_errors=True)
    return stopped


def status(state_dir: Path) -> dict[str, object]:
    state = _read_state(state_dir)
    if state is None:
        return {"running": False, "state_dir": str(state_dir)}
    marker = str(state_dir)
    return {
        "running": all(process.is_running(s.pid, marker) for s in (state.kafka, state.minio)),
        "state_dir": str(state_dir),
        "kafka": {**asdict(state.kafka), "alive": process.is_running(state.kafka.pid, marker)},
        "minio": {**asdict(state.minio), "alive": process.is_running(state.minio.pid, marker)},
        "environment": state.endpoints().environment(),
    }


def endpoints(state_dir: Path) -> Endpoints | None:
    state = _running_state(state_dir)
    return state.endpoints() if state is not None else None


def _running_state(state_dir: Path) -> _State | None:
    state = _read_state(state_dir)
    if state is None:
        return None
    marker = str(state_dir)
    if all(process.is_running(s.pid, marker) for s in (state.kafka, state.minio)):
        return state
    return None


def _read_state(state_dir: Path) -> _State | None:
    try:
        raw = json.loads((state_dir / _STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return _State(
        state_dir=raw["state_dir"],
        kafka=_Service(**raw["kafka"]),
        minio=_Service(**raw["minio"]),
    )
