"""Bring the local stack up and down, and say what is running.

State (pids, ports, log paths) is one JSON file in the state directory, so
`up` run twice finds the running stack and returns it, and `down` can stop it
from any shell. Data lives in the state directory.

`up` never deletes data: a service of the stack that died is started again
on its data and its port, the other one is left running; a directory whose
state file is gone while processes still use it is refused, naming them. `down`
stops the processes the state names, and deletes the directory only once no
process uses it any more (a server restarted by hand is named, not deleted
from under); it never signals a process the state does not name.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
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
    controller_port: int | None = None
    """The broker's KRaft controller port, kept across restarts (None in older state files)."""

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
    say: Callable[[str], None] = lambda _: None,
) -> Endpoints:
    """Start what is not running of the stack in `state_dir` (installing on first use), on the
    data it has, and wait until both services answer. Never deletes anything.

    A stack that runs is returned as is; one with a dead service gets that service started
    again on its port and data. The ports asked for apply only to a stack without state.
    """
    state = _read_state(state_dir)
    marker = str(state_dir)
    if state is None:
        _refuse_if_used(state_dir, "start a stack there")
        state = _State(
            state_dir=marker,
            kafka=_Service(0, kafka_port, str(state_dir / "kafka.log")),
            minio=_Service(0, minio_port, str(state_dir / "minio.log")),
        )
    controller_port = state.controller_port or process.free_port()
    kafka_alive = process.is_running(state.kafka.pid, marker)
    minio_alive = process.is_running(state.minio.pid, marker)
    for alive, service, name in (
        (kafka_alive, state.kafka, "Kafka"),
        (minio_alive, state.minio, "MinIO"),
    ):
        if not alive and process.port_open(service.port):
            raise StackError(f"port {service.port} for {name} is already taken by another process")

    state_dir.mkdir(parents=True, exist_ok=True)
    kafka_service, minio_service = state.kafka, state.minio
    if not minio_alive:
        pid, log = minio.start(
            binary=minio.ensure_binary(cache_dir),
            state_dir=state_dir,
            port=state.minio.port,
            console_port=process.free_port(),
        )
        minio_service = _Service(pid, state.minio.port, str(log))
        say(f"MinIO started on port {state.minio.port} (pid {pid}) with the data in {state_dir}")
    else:
        say(f"MinIO is running (pid {state.minio.pid}): left as it is")
    if not kafka_alive:
        # A log directory formatted before keeps its records: never formatted again.
        start = kafka.start_on_data if kafka.formatted(state_dir) else kafka.start
        pid, log = start(
            libs=kafka.ensure_jars(cache_dir),
            state_dir=state_dir,
            port=state.kafka.port,
            controller_port=controller_port,
        )
        kafka_service = _Service(pid, state.kafka.port, str(log))
        say(f"Kafka started on port {state.kafka.port} (pid {pid}) with the data in {state_dir}")
    else:
        say(f"Kafka is running (pid {state.kafka.pid}): left as it is")
    state = _State(marker, kafka_service, minio_service, controller_port)
    # Written before waiting, so `down` finds what was started even if the wait fails.
    (state_dir / _STATE_FILE).write_text(json.dumps(asdict(state), indent=2))
    try:
        minio.wait_ready(
            pid=minio_service.pid,
            marker=marker,
            port=minio_service.port,
            log=Path(minio_service.log),
        )
        kafka.wait_ready(
            pid=kafka_service.pid,
            marker=marker,
            port=kafka_service.port,
            log=Path(kafka_service.log),
        )
    except StackError:
        # Stop only what this call started; the data stays for the next try.
        for alive, service in ((minio_alive, minio_service), (kafka_alive, kafka_service)):
            if not alive:
                process.stop(service.pid, marker)
        raise
    return state.endpoints()


def down(state_dir: Path) -> list[str]:
    """Stop the processes the state names, then delete the directory and its data.

    Returns the names of the services stopped. StackError, deleting nothing, when other
    processes still use the directory (servers restarted by hand, a stack whose state file
    is gone): they are named, never signalled.
    """
    state = _read_state(state_dir)
    marker = str(state_dir)
    stopped = []
    if state is not None:
        for name, service in (("Kafka", state.kafka), ("MinIO", state.minio)):
            if process.is_running(service.pid, marker):
                process.stop(service.pid, marker)
                stopped.append(name)
    if state_dir.exists():
        what = "delete it" if state is not None else "delete it (it has no stack state)"
        _refuse_if_used(state_dir, what)
        shutil.rmtree(state_dir, ignore_errors=True)
    return stopped


def _refuse_if_used(state_dir: Path, what: str) -> None:
    if not state_dir.exists():
        return
    users = process.users_of(state_dir)
    if users:
        named = "; ".join(str(user) for user in users)
        raise StackError(
            f"processes not named by the stack's state still use {state_dir}, so it will not "
            f"{what}: {named}. Stop them first (or use another --dir)."
        )


def status(state_dir: Path) -> dict[str, object]:
    state = _read_state(state_dir)
    if state is None:
        users = process.users_of(state_dir) if state_dir.exists() else []
        return {
            "running": False,
            "state_dir": str(state_dir),
            "other_processes": [str(user) for user in users],
        }
    marker = str(state_dir)
    named = {state.kafka.pid, state.minio.pid}
    others = [str(user) for user in process.users_of(state_dir) if user.pid not in named]
    return {
        "running": all(process.is_running(s.pid, marker) for s in (state.kafka, state.minio)),
        "state_dir": str(state_dir),
        "kafka": {**asdict(state.kafka), "alive": process.is_running(state.kafka.pid, marker)},
        "minio": {**asdict(state.minio), "alive": process.is_running(state.minio.pid, marker)},
        "environment": state.endpoints().environment(),
        "other_processes": others,
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
        controller_port=raw.get("controller_port"),
    )
