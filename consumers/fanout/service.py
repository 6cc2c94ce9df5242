"""One running live-service replica: its readers, hub, progress board and replay reader.

`running_live` starts a reader per topic (uploads, progress, detections,
quota) from `lookback` seconds ago, each feeding the hub, plus the heartbeat
task; on leaving it closes every client (1001, going away), then stops the
readers. Readers come from `open_reader`, so the same code runs on Kafka
(`ingest consume fanout`) and on the in-process bus (`ingest dev`). Every
replica reads everything (no consumer group), so any number can stand
behind a load balancer.

How it fails: ServiceUnavailable from a reader that cannot start. A reader
that fails later turns `checks` (readiness) to what it says, and the hub
keeps serving what it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from consumers.fanout import closecodes
from consumers.fanout.client import Client
from consumers.fanout.hub import Hub
from consumers.fanout.metrics import FanoutMetrics
from consumers.fanout.progress import ProgressBoard
from consumers.fanout.settings import FanoutSettings
from infra.feeds import RangeReader, RecordHandler, TopicReader
from infra.tokens import TokenVerifier
from schemas import Topics

log = logging.getLogger(__name__)

OpenReader = Callable[[str, RecordHandler, float], TopicReader]
"""A topic reader of `topic` handing records to the handler, starting at a Unix time."""


def live_topics(topics: Topics) -> tuple[str, ...]:
    """The topics the feed reads, in the order cursors name them."""
    return (topics.uploads, topics.progress, topics.detections, topics.quota)


@dataclass
class LiveService:
    settings: FanoutSettings
    hub: Hub
    ranges: RangeReader
    verifier: TokenVerifier
    metrics: FanoutMetrics
    readers: list[TopicReader]
    clients: set[Client] = field(default_factory=set)

    def checks(self) -> dict[str, str]:
        return {
            f"read {reader.topic}": (
                "ok"
                if reader.healthy and reader.ready.is_set()
                else reader.last_error or "catching up"
            )
            for reader in self.readers
        }

    async def close_clients(self) -> None:
        clients = list(self.clients)
        for client in clients:
            client.kick(closecodes.GOING_AWAY, "the service is shutting down")
        await asyncio.gather(*(client.wait_closed() for client in clients))


LIVE = web.AppKey("live", LiveService)


@asynccontextmanager
async def running_live(
    settings: FanoutSettings, topics: Topics, open_reader: OpenReader, ranges: RangeReader
) -> AsyncIterator[LiveService]:
    metrics = FanoutMetrics()
    names = live_topics(topics)
    hub = Hub(
        names,
        max_per_user=settings.max_connections_per_user,
        max_total=settings.max_connections,
        board=ProgressBoard(
            keep_finished=settings.keep_finished_seconds,
            max_uploads=settings.max_tracked_uploads,
        ),
        metrics=metrics,
    )
    since = time.time() - settings.lookback_seconds
    readers = [open_reader(name, hub.handle, since) for name in names]
    service = LiveService(settings, hub, ranges, settings.verifier(), metrics, readers)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(ranges.close)
        for reader in readers:
            hub.follow(reader)
            await reader.start()
            stack.push_async_callback(reader.stop)
        beats = asyncio.create_task(_beat(hub, settings.heartbeat_seconds), name="fanout-heartbeat")
        try:
            yield service
        finally:
            await service.close_clients()
            beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beats


async def _beat(hub: Hub, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        hub.heartbeat()
