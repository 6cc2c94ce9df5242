"""Every user's quota as last published on the in-process bus: the `QuotaView` of `ingest dev`.

The in-process twin of `ingest.adapters.kafka_quota.KafkaQuotaView`: an owned
background task reads the bus's quota topic from the beginning (the bus
compacts it, as Kafka does, so every user's latest snapshot is there), decodes
each record and keeps the latest `QuotaUpdated` per user; the answers and the
health reporting are those of every view (`ingest.quota.SnapshotQuotaView`).

How it fails: records that are not valid events are logged and skipped, and
unknown event types are skipped. When the bus drops the subscription (the view
fell behind), the view is unhealthy for a moment and reads the topic again
from the beginning. When the bus closes, the task ends and the view stays
unhealthy. `check` raises ServiceUnavailable unless the task is reading and
has read what the topic held when it started (`ready`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from infra.bus import (
    BusRecord,
    InProcessEventBus,
    SubscriberDropped,
    Subscription,
)
from ingest.usecases.quota import SnapshotQuotaView

log = logging.getLogger(__name__)

_RESUBSCRIBE_SECONDS: Final = 0.1


def _utc_now() -> datetime:
    return datetime.now(UTC)


class BusQuotaView(SnapshotQuotaView):
    """`QuotaView` kept up to date from the bus's quota topic by an owned background task."""

    _ended_message = "the event bus closed"

    def __init__(
        self,
        bus: InProcessEventBus,
        *,
        quota_bytes: int,
        quota_uploads: int,
        period_days: int,
        ready_timeout: float = 5.0,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        super().__init__(
            bus.topics.quota,
            quota_bytes=quota_bytes,
            quota_uploads=quota_uploads,
            period_days=period_days,
            clock=clock,
        )
        self._bus = bus
        self._ready_timeout = ready_timeout

    async def start(self) -> None:
        """Start reading; wait (at most `ready_timeout`) until what the topic holds is read."""
        if self._task is not None:
            return
        self._ready.clear()
        self._healthy = True
        self._last_error = None
        task = asyncio.create_task(self._read(), name="bus-quota-view")
        task.add_done_callback(self._on_task_done)
        self._task = task
        caught_up = asyncio.create_task(self._ready.wait())
        # A task that ends at once (a closed bus) need not make start wait its full timeout.
        try:
            await asyncio.wait(
                [caught_up, task], timeout=self._ready_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            caught_up.cancel()
        if not self._ready.is_set() and not task.done():  # an ended task was logged already
            log.warning(
                "quota view not caught up with %s after %g s; answering from what it has read",
                self._topic,
                self._ready_timeout,
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._healthy = False
        if task is not None:
            task.cancel()
            # Whatever the task ended with was logged by _on_task_done.
            await asyncio.wait([task])

    async def _read(self) -> None:
        while True:
            subscription = self._bus.subscribe(self._topic, from_beginning=True)
            try:
                await self._follow(subscription)
                return  # the bus closed
            except SubscriberDropped as error:
                # Replaying the compacted topic rebuilds every snapshot; stale for a moment.
                self._healthy = False
                self._last_error = error.message
                log.warning("%s; reading %s again from the beginning", error, self._topic)
            finally:
                subscription.close()
            await asyncio.sleep(_RESUBSCRIBE_SECONDS)

    async def _follow(self, subscription: Subscription) -> None:
        self._healthy = True
        self._last_error = None
        if subscription.caught_up:
            self._mark_ready()
        async for record in subscription:
            self._apply(record)
            if subscription.caught_up:
                self._mark_ready()

    def _apply(self, record: BusRecord) -> None:
        self._apply_record(
            record.key, record.value, record.headers, f"{record.topic}@{record.offset}"
        )
