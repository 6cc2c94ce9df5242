"""`ingest consume fanout`: the live service on Kafka, serving until SIGTERM or SIGINT.

The composition root of a live-service replica: Kafka topic readers (no
consumer group: every replica reads everything) from the lookback on, a
Kafka range reader for replays, an S3 client for the detection's result
documents, and the aiohttp application on `--host`/`--port` (default
127.0.0.1:8081).

How it fails: ServiceUnavailable when Kafka cannot be reached at start,
OSError when the port is taken.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from consumers.fanout.app import fanout_app
from consumers.fanout.service import LiveService, OpenReader, running_live
from consumers.fanout.settings import FanoutSettings
from infra.feeds import RecordHandler, TopicReader
from infra.kafka.ranges import KafkaRangeReader
from infra.kafka.reader import KafkaTopicReader
from infra.s3 import open_s3_client
from infra.s3_objects import S3Documents
from schemas import Topics

log = logging.getLogger(__name__)


def kafka_readers(servers: str, client_id: str) -> OpenReader:
    def open_reader(topic: str, handler: RecordHandler, since: float) -> TopicReader:
        return KafkaTopicReader(servers, topic, handler, since=since, client_id=client_id)

    return open_reader


@asynccontextmanager
async def live_on_kafka(settings: FanoutSettings, client_id: str) -> AsyncIterator[LiveService]:
    servers = settings.kafka_bootstrap_servers
    ranges = KafkaRangeReader(servers, consumers=settings.replay_readers, client_id=client_id)
    async with running_live(
        settings, Topics(settings.topic_prefix), kafka_readers(servers, client_id), ranges
    ) as live:
        yield live


@asynccontextmanager
async def serving_fanout(settings: FanoutSettings) -> AsyncIterator[web.AppRunner]:
    """A replica listening on settings.host:port (0: a free port, see `runner.addresses`)."""
    async with (
        live_on_kafka(settings, f"fanout-{settings.port}") as live,
        open_s3_client(settings.s3) as s3,
    ):
        app = fanout_app(live, S3Documents(s3, settings.s3_bucket))
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
        await runner.setup()
        try:
            await web.TCPSite(runner, settings.host, settings.port, backlog=1024).start()
            yield runner
        finally:
            await runner.cleanup()


async def run_fanout(settings: FanoutSettings, *, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with serving_fanout(settings):
            log.info("live service on http://%s:%d", settings.host, settings.port)
            await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
