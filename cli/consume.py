"""`ingest consume NAME`: one consumer app on Kafka until SIGTERM or SIGINT.

The composition root of a consumer process: the app from the registry, the
Kafka group consumer (group = the app's name), the Kafka sink as the
dead-letter publisher, the health and metrics port, and the runtime.
`CONSUMER_APPS` is the registry: each consumer's factory opens what the
consumer needs (a started event sink, readers) and yields the app.

How it fails: ServiceUnavailable when Kafka cannot be reached at start,
OSError when the metrics port is taken; a runtime failure is raised after
the drain, so the process exits non-zero and is restarted.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from consumers.detection import detection_settings_from_env, open_detection
from consumers.quota import quota_app
from consumers.runtime import ConsumerApp, ConsumerRuntime, RuntimeOptions
from consumers.runtime.observability import serve_observability
from consumers.runtime.settings import ConsumerSettings
from infra.feeds import RecordHandler, TopicReader
from infra.kafka.group import KafkaGroupConsumer
from infra.kafka.reader import KafkaTopicReader
from infra.kafka.sink import KafkaEventSink
from infra.s3 import open_s3_client
from infra.s3_objects import S3Documents, S3Objects
from schemas import Topics

log = logging.getLogger(__name__)

AppFactory = Callable[[ConsumerSettings], AbstractAsyncContextManager[ConsumerApp]]


@asynccontextmanager
async def quota_on_kafka(settings: ConsumerSettings) -> AsyncIterator[ConsumerApp]:
    """The quota consumer, publishing its snapshots with a producer of its own."""
    topics = Topics(settings.topic_prefix)
    servers = settings.kafka_bootstrap_servers

    def open_reader(topic: str, handler: RecordHandler) -> TopicReader:
        return KafkaTopicReader(servers, topic, handler)

    async with KafkaEventSink(
        servers, topics, source=f"/consumer/quota/{settings.instance_id}"
    ) as snapshots:
        yield quota_app(
            topics,
            snapshots,
            open_reader,
            bytes_limit=settings.quota_bytes,
            uploads_limit=settings.quota_uploads,
            period_days=settings.quota_period_days,
        )


@asynccontextmanager
async def detection_on_kafka(settings: ConsumerSettings) -> AsyncIterator[ConsumerApp]:
    """The detection consumer: files and result documents in S3, outcomes to Kafka."""
    detection = detection_settings_from_env()
    topics = Topics(settings.topic_prefix)
    async with (
        open_s3_client(detection.s3_endpoint()) as s3,
        KafkaEventSink(
            settings.kafka_bootstrap_servers,
            topics,
            source=f"/consumer/detection/{settings.instance_id}",
        ) as outcomes,
        open_detection(
            detection, topics, outcomes, S3Objects(s3), S3Documents(s3, detection.s3_bucket)
        ) as app,
    ):
        yield app


CONSUMER_APPS: dict[str, AppFactory] = {"quota": quota_on_kafka, "detection": detection_on_kafka}
"""Consumer apps `ingest consume` can run, by name."""


async def run_consumer(
    app: ConsumerApp, settings: ConsumerSettings, *, stop: asyncio.Event | None = None
) -> None:
    """Run `app` on Kafka until `stop` is set or SIGTERM/SIGINT arrives; drain, commit, leave."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with KafkaEventSink(
            settings.kafka_bootstrap_servers,
            Topics(settings.topic_prefix),
            source=f"/consumer/{app.name}/{settings.instance_id}",
        ) as dead_letters:
            runtime = ConsumerRuntime(
                app,
                dead_letters,
                Topics(settings.topic_prefix).dlq,
                options=RuntimeOptions(
                    drain_seconds=settings.drain_seconds,
                    commit_interval_seconds=settings.commit_interval_seconds,
                ),
            )
            member = KafkaGroupConsumer(
                settings.kafka_bootstrap_servers,
                app.name,
                *sorted(app.topics),
                listener=runtime,
                client_id=f"{app.name}-{settings.instance_id}",
            )
            async with serve_observability(runtime, settings.metrics_host, settings.metrics_port):
                log.info(
                    "consumer %s: health and metrics on %s:%d",
                    app.name,
                    settings.metrics_host,
                    settings.metrics_port,
                )
                await runtime.run(member, stop, end_offsets=member)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
