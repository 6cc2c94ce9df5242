"""Every user's quota as last published on the in-process bus: the `QuotaView` of `ingest dev`.

The in-process twin of `ingest.adapters.kafka_quota.KafkaQuotaView`: an owned
background task reads the bus's quota topic from the beginning (the bus
compacts it, as Kafka does, so every user's latest snapshot is there), decodes
each record with `schemas.decode` and keeps the latest `QuotaUpdated` per user.
`status` answers from memory with the same rules as the Kafka view, periods
from `kafka_quota.current_period`: a user without a snapshot, or whose snapshot
belongs to a period that has ended, gets the current period with no usage
(and, for the latter, the limits of the snapshot).

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
from types import TracebackType
from typing import Final, Self

from ingest.adapters.memory_bus import (
    BusRecord,
    InProcessEventBus,
    SubscriberDropped,
    Subscription,
)
from ingest.errors import ServiceUnavailable
from ingest.ports import QuotaStatus
from ingest.quota import quota_status
from schemas import InvalidEvent, QuotaUpdated, decode

log = logging.getLogger(__name__)

_RESUBSCRIBE_SECONDS: Final = 0.1


def _utc_now() -> datetime:
    return datetime.now(UTC)


class BusQuotaView:
    """`QuotaView` kept up to date from the bus's quota topic by an owned background task."""

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
        if period_days < 1:
            raise ValueError("a quota period lasts at least one day")
        self._bus = bus
        self._topic = bus.topics.quota
        self._quota_bytes = quota_bytes
        self._quota_uploads = quota_uploads
        self._period_days = period_days
        self._ready_timeout = ready_timeout
        self._clock = clock
        self._snapshots: dict[str, QuotaUpdated] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._healthy = False
        self._last_error: str | None = None

    @property
    def ready(self) -> asyncio.Event:
        """Set once the snapshots the topic held at `start` have all been read."""
        return self._ready

    @property
    def healthy(self) -> bool:
        """False while the reading task is not reading (not started, resubscribing, ended)."""
        return self._healthy and self._task is not None and not self._task.done()

    @property
    def last_error(self) -> str | None:
        return self._last_error

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

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

    async def check(self) -> None:
        """ServiceUnavailable unless the view is reading and has caught up."""
        if not self.healthy:
            raise ServiceUnavailable(
                f"the quota view of {self._topic!r} is failing: "
                f"{self._last_error or 'not running'}",
                details={"topic": self._topic, "retriable": True},
            )
        if not self._ready.is_set():
            raise ServiceUnavailable(
                f"the quota view has not caught up with {self._topic!r} yet",
                details={"topic": self._topic, "retriable": True},
            )

    def status(self, user_id: str) -> QuotaStatus:
        return quota_status(
            user_id,
            self._snapshots.get(user_id),
            now=self._clock(),
            period_days=self._period_days,
            quota_bytes=self._quota_bytes,
            quota_uploads=self._quota_uploads,
        )

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

    def _mark_ready(self) -> None:
        if not self._ready.is_set():
            log.info("quota view caught up: %d users", len(self._snapshots))
            self._ready.set()

    def _apply(self, record: BusRecord) -> None:
        try:
            event = decode(record.value, record.headers)
        except InvalidEvent as error:
            log.warning(
                "skipping an invalid record at %s@%d: %s", record.topic, record.offset, error
            )
            return
        if isinstance(event, QuotaUpdated):
            self._snapshots[event.user_id] = event

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        self._healthy = False
        self._last_error = repr(error) if error else "the event bus closed"
        if error is not None:
            log.error("the quota view's reading task stopped", exc_info=error)
        else:
            log.info("the quota view stopped reading: the event bus closed")
