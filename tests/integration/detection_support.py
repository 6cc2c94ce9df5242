"""The detection consumer on the real Kafka and MinIO, for the detection integration tests.

`Detection` stores files in the module's bucket, publishes their completed
uploads to the module's `ingest.uploads`, and reads what came out of the
consumer from the real topics (`ingest.detections`, `ingest.dlq`) and the
real result documents. `running_detection` runs a `DetectionApp` through
`cli.consume.run_consumer` (the code `ingest consume detection` runs), with
its analyser wrapped so a test can see when each analysis ran.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiofiles.os
import msgspec

from cli.consume import run_consumer
from consumers.detection import DetectionApp, DetectionSettings
from consumers.detection.analysis import Analysis
from consumers.detection.outcomes import Outcomes
from consumers.detection.pool import AnalysisPool
from consumers.runtime import ConsumerApp
from consumers.runtime.settings import ConsumerSettings
from deploy.stack.process import free_port
from infra.feeds import Record
from infra.kafka.reader import KafkaTopicReader
from infra.kafka.sink import KafkaEventSink
from infra.layout import object_key
from infra.s3 import open_s3_client
from infra.s3_objects import S3Documents, S3Objects
from ingest.settings import IngestSettings
from schemas import DetectionCompleted, DetectionFailed, Event, Topics, UploadCompleted, decode
from schemas.api import VideoResults


def detection_settings(
    settings: IngestSettings, scratch: Path, **changes: Any
) -> DetectionSettings:
    endpoint = settings.s3_endpoint()
    base = DetectionSettings(
        workers=2,
        time_limit_seconds=120.0,
        scratch_dir=scratch,
        s3_endpoint_url=endpoint.endpoint_url,
        s3_bucket=settings.s3_bucket,
        aws_access_key_id=endpoint.access_key_id,
        aws_secret_access_key=endpoint.secret_access_key,
        aws_region=endpoint.region,
    )
    return msgspec.structs.replace(base, **changes)


def consumer_settings(settings: IngestSettings) -> ConsumerSettings:
    return ConsumerSettings(
        kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
        topic_prefix=settings.topic_prefix,
        metrics_port=free_port(),
        drain_seconds=30,
        commit_interval_seconds=0.5,
        instance_id="test",
    )


class Recording:
    """The pool, remembering when each analysis ran (monotonic start and end)."""

    def __init__(self, pool: AnalysisPool) -> None:
        self._pool = pool
        self.workers = pool.workers
        self.spans: list[tuple[float, float]] = []

    async def analyse(self, path: Path, *, priority: int = 5) -> Analysis:
        start = time.monotonic()
        try:
            return await self._pool.analyse(path, priority=priority)
        finally:
            self.spans.append((start, time.monotonic()))

    def overlapping(self) -> int:
        """The most analyses that ran at one moment."""
        edges = sorted([(s, 1) for s, _ in self.spans] + [(e, -1) for _, e in self.spans])
        running = most = 0
        for _, step in edges:
            running += step
            most = max(most, running)
        return most


class Detection:
    """One running detection consumer and the real topics and bucket around it."""

    def __init__(self, settings: IngestSettings, s3: Any, sink: KafkaEventSink) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.s3 = s3
        self.sink = sink
        self.documents = S3Documents(s3, settings.s3_bucket)
        self.results = Outcomes(self.documents)
        self.outcomes: dict[str, Event] = {}
        self.seen: Counter[str] = Counter()
        self.dead: list[Record] = []
        self.app: DetectionApp | None = None
        self.analyser: Recording | None = None

    def _outcome(self, record: Record) -> None:
        event = decode(record.value, record.headers) if record.value else None
        if isinstance(event, DetectionCompleted | DetectionFailed):
            self.outcomes[event.analysis_id] = event
            self.seen[event.analysis_id] += 1

    async def store(
        self, path: Path, *, user: str, auto_analyze: bool = True, priority: int = 5
    ) -> UploadCompleted:
        data = await asyncio.to_thread(path.read_bytes)
        upload_id = uuid.uuid4().hex
        key = object_key(user, upload_id, path.name)
        await self.s3.put_object(Bucket=self.settings.s3_bucket, Key=key, Body=data)
        now = datetime.now(UTC)
        return UploadCompleted(
            upload_id=upload_id,
            user_id=user,
            sequence=2,
            filename=path.name,
            content_type=None,
            format=path.suffix.lstrip("."),
            protocol="dashboard",
            priority=priority,
            auto_analyze=auto_analyze,
            s3_bucket=self.settings.s3_bucket,
            s3_key=key,
            total_bytes=len(data),
            video_id=f"vid-{uuid.uuid4().hex[:12]}",
            analysis_id=f"ana-{uuid.uuid4().hex[:12]}",
            size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            etag=None,
            parts=1,
            started_at=now,
            completed_at=now,
        )

    async def publish(self, *events: Event) -> None:
        for event in events:
            await self.sink.emit(event)

    async def outcome_of(self, *uploads: UploadCompleted, seconds: float = 90) -> list[Event]:
        """The detection events of these uploads, read from `ingest.detections`."""
        async with asyncio.timeout(seconds):
            while any(upload.analysis_id not in self.outcomes for upload in uploads):
                await asyncio.sleep(0.1)
        return [self.outcomes[upload.analysis_id] for upload in uploads]

    async def dead_letters(self, count: int, seconds: float = 60) -> list[Record]:
        async with asyncio.timeout(seconds):
            while len(self.dead) < count:
                await asyncio.sleep(0.1)
        return self.dead

    async def page(self, upload: UploadCompleted) -> VideoResults | None:
        """The results page's document of this upload, as the consumer stored it in S3."""
        return await self.results.of_video(upload.user_id, upload.video_id)


@asynccontextmanager
async def detection_topics(settings: IngestSettings) -> AsyncIterator[Detection]:
    """The bucket, a publisher and readers of the output topics, without a consumer yet."""
    topics = Topics(settings.topic_prefix)
    servers = settings.kafka_bootstrap_servers
    async with (
        open_s3_client(settings.s3_endpoint()) as s3,
        KafkaEventSink(servers, topics, source="/test/detection", timeout=10) as sink,
    ):
        detection = Detection(settings, s3, sink)
        async with (
            KafkaTopicReader(servers, topics.detections, detection._outcome),
            KafkaTopicReader(servers, topics.dlq, detection.dead.append),
        ):
            yield detection


@asynccontextmanager
async def running_detection(
    detection: Detection, config: DetectionSettings, *, model: str | None = None
) -> AsyncIterator[DetectionApp]:
    """A detection consumer on the module's topics (group `detection`), stopped on exit."""
    pool = AnalysisPool(
        config.analysis(), workers=config.workers, time_limit=config.time_limit_seconds
    )
    try:
        await aiofiles.os.makedirs(config.scratch_dir, exist_ok=True)
        await pool.start()
        recording = Recording(pool)
        app = DetectionApp(
            detection.topics,
            detection.sink,
            S3Objects(detection.s3),
            detection.documents,
            recording,
            scratch_dir=config.scratch_dir,
            model=model,
            max_in_flight=config.in_flight,
        )
        detection.app, detection.analyser = app, recording
        async with consuming(app, detection.settings):
            yield app
    finally:
        await pool.close()


@asynccontextmanager
async def consuming(app: ConsumerApp, settings: IngestSettings) -> AsyncIterator[None]:
    """`app` run by `cli.consume.run_consumer` on the module's Kafka until the block ends."""
    stop = asyncio.Event()
    running = asyncio.create_task(run_consumer(app, consumer_settings(settings), stop=stop))
    try:
        yield
    finally:
        stop.set()
        async with asyncio.timeout(60):
            await running
