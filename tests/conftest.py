"""Fixtures for every test: a guard against blocking calls in the event loop, and real services.

Real Kafka and S3 are found or started once per session, and only when a test
asks for them. Order of preference: KAFKA_BOOTSTRAP_SERVERS and S3_ENDPOINT_URL
when both are set; else testcontainers when a Docker engine answers; else the
project's own local stack (`ingest stack`), started here and stopped at the end.
Each test module gets its own topic prefix and bucket (`settings`), so modules
never see each other's records.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from blockbuster import BlockBuster, blockbuster_ctx

from deploy import stack
from deploy.stack.process import free_port
from infra.provisioning import ensure_bucket, ensure_topics
from infra.s3 import S3Endpoint, open_s3, warm_session
from ingest.settings import IngestSettings, ingest_settings_from_env
from schemas.topics import Topics

# Only blocking calls made through the project's own code are judged.
_SCANNED = ["ingest", "consumers", "schemas", "deploy", "tests"]


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    with blockbuster_ctx(_SCANNED) as guard:
        # botocore probes for optional "-extras" model files on every client it builds and
        # does not cache a miss: a few stat calls per client, once per process in the
        # service, which no warm-up can remove.
        guard.functions["os.stat"].can_block_in("botocore/loaders.py", "_find_extras")
        yield guard


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack.Endpoints]:
    env = os.environ
    if env.get("KAFKA_BOOTSTRAP_SERVERS") and env.get("S3_ENDPOINT_URL"):
        yield stack.Endpoints(
            kafka_bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
            s3_endpoint_url=env["S3_ENDPOINT_URL"],
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID", "minioadmin"),
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY", "minioadmin"),
            aws_region=env.get("AWS_REGION", "us-east-1"),
        )
    elif _docker_engine_answers():
        with ExitStack() as containers:
            yield _start_containers(containers)
    else:
        state_dir = tmp_path_factory.mktemp("stack")
        try:
            yield stack.up(
                state_dir,
                cache_dir=stack.default_cache_dir(),
                kafka_port=free_port(),
                minio_port=free_port(),
            )
        finally:
            stack.down(state_dir)


@pytest.fixture(scope="module")
def settings(services: stack.Endpoints) -> Iterator[IngestSettings]:
    """Settings for one test module: the real services, its own topics and bucket."""
    unique = uuid.uuid4().hex[:10]
    module_settings = ingest_settings_from_env(
        {
            **services.environment(),
            "INGEST_TOPIC_PREFIX": f"test-{unique}.",
            "S3_BUCKET": f"test-{unique}",
            "INGEST_JWT_SECRET": "integration-test-secret-at-least-32-bytes",
        }
    )
    asyncio.run(_provision(module_settings))
    yield module_settings
    asyncio.run(_delete_bucket(module_settings.s3_endpoint(), module_settings.s3_bucket))
    # A broker kept across many runs (`ingest stack up`) would otherwise pile up thousands
    # of partitions, each holding open files, until it runs out of file descriptors.
    asyncio.run(_delete_topics(module_settings.kafka_bootstrap_servers, f"test-{unique}"))


async def _provision(settings: IngestSettings) -> None:
    await ensure_topics(settings.kafka_bootstrap_servers, Topics(settings.topic_prefix))
    await ensure_bucket(settings.s3_endpoint(), settings.s3_bucket)


async def _delete_topics(bootstrap_servers: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if name.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


async def _delete_bucket(endpoint: S3Endpoint, bucket: str) -> None:
    async with open_s3(await warm_session(), endpoint) as s3:
        uploads = await s3.list_multipart_uploads(Bucket=bucket)
        for upload in uploads.get("Uploads", []):
            await s3.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                await s3.delete_object(Bucket=bucket, Key=item["Key"])
        await s3.delete_bucket(Bucket=bucket)


def _docker_engine_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no client library, no socket, no engine: all mean "no Docker"
        return False


def _start_containers(containers: ExitStack) -> stack.Endpoints:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.minio import MinioContainer

    kafka = containers.enter_context(KafkaContainer("confluentinc/cp-kafka:7.7.1").with_kraft())
    minio = containers.enter_context(MinioContainer())
    config = minio.get_config()
    return stack.Endpoints(
        kafka_bootstrap_servers=kafka.get_bootstrap_server(),
        s3_endpoint_url=f"http://{config['endpoint']}",
        aws_access_key_id=config["access_key"],
        aws_secret_access_key=config["secret_key"],
    )
