"""`ingest stack up|down` on a private stack: a dead service comes back on its data, and
nothing is deleted from under a running process.

The stack here is the test's own (its own state directory and free ports),
never the shared one; it needs Java, and the Kafka jars and the MinIO binary
already in the cache (`ingest stack up` puts them there), and is skipped
without them. Every process it starts is stopped on the way out.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from deploy import stack
from deploy.stack import kafka, minio, process
from deploy.stack.process import free_port
from infra.s3 import S3Endpoint, open_s3, warm_session
from tests.integration.brokers import wait_until_dead

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "kept"
TOPIC = "kept-records"
OBJECTS = 25
RECORDS = 60


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    if shutil.which("java") is None:
        pytest.skip("the stack's Kafka needs Java")
    cache = stack.default_cache_dir()
    try:
        kafka.ensure_jars(cache)
        minio.ensure_binary(cache)
    except stack.StackError as error:
        pytest.skip(f"the stack is not installed: {error}")
    directory = tmp_path / "stack"
    yield directory
    # Whatever is still running from this directory was started by this test.
    for user in process.users_of(directory):
        process.stop(user.pid, str(directory), grace=5)


def _ingest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _pids(state_dir: Path) -> tuple[int, int]:
    report = stack.status(state_dir)
    kafka_state, minio_state = report["kafka"], report["minio"]
    assert isinstance(kafka_state, dict)
    assert isinstance(minio_state, dict)
    return int(kafka_state["pid"]), int(minio_state["pid"])


def _endpoint(port: int) -> S3Endpoint:
    return S3Endpoint(f"http://127.0.0.1:{port}", "us-east-1", minio.ACCESS_KEY, minio.SECRET_KEY)


async def _write(kafka_port: int, s3_port: int) -> None:
    async with open_s3(await warm_session(), _endpoint(s3_port)) as s3:
        await s3.create_bucket(Bucket=BUCKET)
        for n in range(OBJECTS):
            await s3.put_object(Bucket=BUCKET, Key=f"objects/{n}", Body=f"object {n}".encode())
    servers = f"127.0.0.1:{kafka_port}"
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
    await producer.start()
    try:
        for n in range(RECORDS):
            await producer.send_and_wait(TOPIC, f"record {n}".encode(), partition=n % 2)
    finally:
        await producer.stop()


async def _count(kafka_port: int, s3_port: int) -> tuple[int, int]:
    """(objects in the bucket, records in the topic)."""
    async with open_s3(await warm_session(), _endpoint(s3_port)) as s3:
        listed = await s3.list_objects_v2(Bucket=BUCKET)
        objects = len(listed.get("Contents", []))
    consumer = AIOKafkaConsumer(bootstrap_servers=f"127.0.0.1:{kafka_port}", group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(TOPIC, n) for n in range(2)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records = 0
        async with asyncio.timeout(30):
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=500)
                records += sum(len(found) for found in batch.values())
    finally:
        await consumer.stop()
    return objects, records


def test_up_restarts_only_the_dead_service_and_down_never_deletes_under_a_process(
    state_dir: Path,
) -> None:
    kafka_port, s3_port = free_port(), free_port()
    ports = ("--kafka-port", str(kafka_port), "--s3-port", str(s3_port))
    first = _ingest("stack", "up", "--dir", str(state_dir), *ports)
    assert first.returncode == 0, first.stderr
    asyncio.run(_write(kafka_port, s3_port))
    assert asyncio.run(_count(kafka_port, s3_port)) == (OBJECTS, RECORDS)
    kafka_pid, minio_pid = _pids(state_dir)

    # The broker dies; `up` again starts it on its data and leaves MinIO running.
    os.kill(kafka_pid, signal.SIGKILL)
    wait_until_dead(kafka_pid, str(state_dir))
    again = _ingest("stack", "up", "--dir", str(state_dir), *ports)
    assert again.returncode == 0, again.stderr
    new_kafka_pid, same_minio_pid = _pids(state_dir)
    assert new_kafka_pid != kafka_pid
    assert same_minio_pid == minio_pid
    assert f"Kafka started on port {kafka_port} (pid {new_kafka_pid})" in again.stderr
    assert f"MinIO is running (pid {minio_pid})" in again.stderr
    assert asyncio.run(_count(kafka_port, s3_port)) == (OBJECTS, RECORDS)

    # MinIO restarted by hand, outside the state: `down` stops the broker it names and
    # refuses to delete the data from under the MinIO it does not name.
    os.kill(minio_pid, signal.SIGKILL)
    wait_until_dead(minio_pid, str(state_dir))
    by_hand, _ = minio.start(
        binary=minio.ensure_binary(stack.default_cache_dir()),
        state_dir=state_dir,
        port=s3_port,
        console_port=free_port(),
    )
    minio.wait_ready(pid=by_hand, marker=str(state_dir), port=s3_port, log=state_dir / "minio.log")
    others = stack.status(state_dir)["other_processes"]
    assert isinstance(others, list)
    assert [other for other in others if other.startswith(f"pid {by_hand} ")], others
    refused = _ingest("stack", "down", "--dir", str(state_dir))
    assert refused.returncode == 1
    assert f"pid {by_hand}" in refused.stderr
    assert not process.is_running(new_kafka_pid, str(state_dir))
    assert process.is_running(by_hand, str(state_dir))
    assert (state_dir / "minio-data").is_dir()

    # With the state file gone, `up` and `down` both name the process instead.
    (state_dir / "stack.json").unlink()
    for action in ("up", "down"):
        answer = _ingest(
            "stack", action, "--dir", str(state_dir), *ports[: 4 if action == "up" else 0]
        )
        assert answer.returncode == 1, answer.stderr
        assert f"pid {by_hand}" in answer.stderr
    assert process.is_running(by_hand, str(state_dir))
    assert (state_dir / "kafka-data").is_dir()

    # Once nothing uses it, `down` deletes it.
    process.stop(by_hand, str(state_dir), grace=5)
    done = _ingest("stack", "down", "--dir", str(state_dir))
    assert done.returncode == 0, done.stderr
    assert not state_dir.exists()
