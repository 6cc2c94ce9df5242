"""Run real ingest servers inside the test's event loop, and read back what they did.

`running_ingest` builds the real services (S3 on MinIO, Kafka) from settings and
serves them on a free loopback port; `topic_events` and `upload_events` read the
module's topics (`events_to_end`, `completions`: every one published so far); `stored_sha256`,
`part_sizes`, `open_uploads` and `bucket_keys` look at the bucket directly.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from aiokafka import AIOKafkaConsumer

from cli.composition import ingest_services
from infra.s3 import open_s3, warm_session
from ingest.auth import issue_token
from ingest.http.app import build_app, start_serving, stop_gracefully
from ingest.http.services import IngestServices
from ingest.settings import IngestSettings
from schemas import Event, EventBase, Topics, UploadCompleted, UploadEvent, decode

E = TypeVar("E", bound=EventBase)


@dataclass(frozen=True)
class RunningIngest:
    url: str
    port: int
    services: IngestServices
    runner: web.AppRunner

    def token(self, user: str, *, admin: bool = False, ttl: float = 600) -> str:
        secret = self.services.settings.jwt_secret
        assert secret is not None
        return issue_token(secret, user, admin=admin, ttl_seconds=ttl)

    async def stop(self) -> None:
        """Shut down as on SIGTERM."""
        await stop_gracefully(self.runner)

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}"}


@asynccontextmanager
async def running_ingest(settings: IngestSettings) -> AsyncIterator[RunningIngest]:
    """Serve `settings`; unless they name a journal directory, with an event journal of its own
    (two servers of one test must not share one, and a test leaves none behind)."""
    if settings.journal_dir is None:
        journal = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="ingest-journal-"))
        try:
            async with running_ingest(
                msgspec.structs.replace(settings, journal_dir=journal)
            ) as server:
                yield server
        finally:
            await asyncio.to_thread(shutil.rmtree, journal, True)
        return
    async with ingest_services(settings) as services:
        runner = await start_serving(build_app(services), "127.0.0.1", 0, shutdown_timeout=5)
        port = runner.addresses[0][1]
        try:
            yield RunningIngest(f"http://127.0.0.1:{port}", port, services, runner)
        finally:
            await runner.cleanup()


async def topic_events(
    settings: IngestSettings,
    topic_names: Sequence[str],
    kind: type[E],
    *,
    keep: Callable[[E], bool],
    until: Callable[[list[E]], bool],
    order: Callable[[E], int] | None = None,
    within: float = 30.0,
) -> list[E]:
    """The events of class `kind` that `keep` accepts, read from the start of the topics
    until `until` holds of them (in `order` when one is given)."""
    consumer = AIOKafkaConsumer(
        *topic_names,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[E] = []
    try:
        async with asyncio.timeout(within):
            while not until(found):
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        event: Event | None = decode(record.value, record.headers)
                        if isinstance(event, kind) and keep(event):
                            found.append(event)
                if order is not None:
                    found.sort(key=order)
    finally:
        await consumer.stop()
    return found


async def upload_events(
    settings: IngestSettings,
    upload_id: str,
    *,
    until: Callable[[list[UploadEvent]], bool],
    within: float = 30.0,
) -> list[UploadEvent]:
    """Every event of one upload, from the uploads and progress topics, in sequence order."""
    topics = Topics(settings.topic_prefix)
    return await topic_events(
        settings,
        [topics.uploads, topics.progress],
        UploadEvent,
        keep=lambda event: event.upload_id == upload_id,
        until=until,
        order=lambda event: event.sequence,
        within=within,
    )


async def events_to_end(
    settings: IngestSettings, keep: Callable[[UploadEvent], bool]
) -> list[UploadEvent]:
    """Every upload event `keep` accepts published so far (the topics read up to the end
    offsets they had when reading began, not until some event shows up), in sequence order:
    to count, e.g. that an upload completed only once."""
    topics = Topics(settings.topic_prefix)
    consumer = AIOKafkaConsumer(
        topics.uploads,
        topics.progress,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[UploadEvent] = []
    try:
        async with asyncio.timeout(30):
            while not consumer.assignment():  # partitions are assigned once metadata is in
                await asyncio.sleep(0.05)
            partitions = sorted(consumer.assignment())
            ends = await consumer.end_offsets(partitions)
            while [p for p in partitions if await consumer.position(p) < ends[p]]:
                batch = await consumer.getmany(*partitions, timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        event: Event | None = decode(record.value, record.headers)
                        if isinstance(event, UploadEvent) and keep(event):
                            found.append(event)
    finally:
        await consumer.stop()
    return sorted(found, key=lambda event: event.sequence)


async def completions(settings: IngestSettings, user_id: str) -> list[UploadCompleted]:
    """Every upload.completed of one user published so far."""
    events = await events_to_end(settings, lambda event: event.user_id == user_id)
    return [event for event in events if isinstance(event, UploadCompleted)]


def ended(events: list[UploadEvent]) -> bool:
    return any(
        type(e).__name__ in {"UploadCompleted", "UploadFailed", "UploadCancelled"} for e in events
    )


async def stored_sha256(settings: IngestSettings, key: str) -> tuple[str, int]:
    async with open_s3(await warm_session(), settings.s3_endpoint()) as s3:
        response = await s3.get_object(Bucket=settings.s3_bucket, Key=key)
        digest = hashlib.sha256()
        size = 0
        async with response["Body"] as body:
            async for chunk in body.iter_chunks(1024 * 1024):
                digest.update(chunk)
                size += len(chunk)
        return digest.hexdigest(), size


async def part_sizes(settings: IngestSettings, key: str) -> list[int]:
    """The sizes of a completed multipart object's parts, in order (HEAD with PartNumber)."""
    async with open_s3(await warm_session(), settings.s3_endpoint()) as s3:
        first = await s3.head_object(Bucket=settings.s3_bucket, Key=key, PartNumber=1)
        sizes = [first["ContentLength"]]
        for number in range(2, first.get("PartsCount", 1) + 1):
            part = await s3.head_object(Bucket=settings.s3_bucket, Key=key, PartNumber=number)
            sizes.append(part["ContentLength"])
        return sizes


async def open_uploads(settings: IngestSettings, key: str) -> list[dict[str, Any]]:
    async with open_s3(await warm_session(), settings.s3_endpoint()) as s3:
        listed = await s3.list_multipart_uploads(Bucket=settings.s3_bucket, Prefix=key)
        return [u for u in listed.get("Uploads", []) if u["Key"] == key]


async def object_exists(settings: IngestSettings, key: str) -> bool:
    async with open_s3(await warm_session(), settings.s3_endpoint()) as s3:
        listed = await s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix=key)
        return any(o["Key"] == key for o in listed.get("Contents", []))


async def bucket_keys(settings: IngestSettings, prefix: str = "") -> list[str]:
    """Every key under `prefix`: objects and open multipart uploads alike."""
    async with open_s3(await warm_session(), settings.s3_endpoint()) as s3:
        objects = await s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix=prefix)
        uploads = await s3.list_multipart_uploads(Bucket=settings.s3_bucket, Prefix=prefix)
        return sorted(
            [o["Key"] for o in objects.get("Contents", [])]
            + [u["Key"] for u in uploads.get("Uploads", [])]
        )
