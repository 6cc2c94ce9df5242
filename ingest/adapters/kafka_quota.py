"""Every user's quota as last published on the compacted quota topic: `QuotaView` from Kafka.

A background task reads the whole quota topic from the beginning, without a
consumer group (every instance needs every user), and keeps the latest
`QuotaUpdated` snapshot per user: the last one by offset, as compaction keeps
it. `status` answers from memory; a user without a snapshot, or whose snapshot
belongs to a period that has ended, gets the current period with no usage.

How it fails: `start` keeps trying to reach Kafka and the topic, and raises
ServiceUnavailable when it cannot within its time limit. A failure of the
reading task is logged and turns `healthy` false; the task backs off and keeps
reading, and `check` raises ServiceUnavailable until it is healthy and has
caught up (`ready`). Records that are not valid events are logged and skipped;
unknown event types are skipped. Partitions added to the topic after `start`
are not read until a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from ingest.errors import ServiceUnavailable
from ingest.ports import QuotaStatus
from ingest.quota import quota_status
from schemas import InvalidEvent, QuotaUpdated, Topics, decode

log = logging.getLogger(__name__)

_MAX_BACKOFF_SECONDS = 30.0
_START_RETRY_SECONDS = 1.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class KafkaQuotaView:
    """`QuotaView` kept up to date from the quota topic by an owned background task."""

    def __init__(
        self,
        bootstrap_servers: str,
        topics: Topics,
        *,
        quota_bytes: int,
        quota_uploads: int,
        period_days: int,
        start_timeout: float = 30.0,
        ready_timeout: float = 30.0,
        client_id: str | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if period_days < 1:
            raise ValueError("a quota period lasts at least one day")
        self._bootstrap_servers = bootstrap_servers
        self._topic = topics.quota
        self._quota_bytes = quota_bytes
        self._quota_uploads = quota_uploads
        self._period_days = period_days
        self._start_timeout = start_timeout
        self._ready_timeout = ready_timeout
        self._client_id = client_id
        self._clock = clock
        self._snapshots: dict[str, QuotaUpdated] = {}
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._healthy = False
        self._last_error: str | None = None

    @property
    def ready(self) -> asyncio.Event:
        """Set once the snapshots published before `start` have all been read."""
        return self._ready

    @property
    def healthy(self) -> bool:
        """False while the reading task is failing (or not running)."""
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
        """Read every partition from the beginning; wait a bounded time to catch up.

        Not catching up within `ready_timeout` is logged, not raised: reading
        goes on, and `check` reports the view unready until it has.
        """
        if self._task is not None:
            return
        self._ready.clear()
        last_error: BaseException | None = None
        try:
            async with asyncio.timeout(self._start_timeout):
                while True:
                    try:
                        consumer, end_offsets = await self._connect()
                        break
                    except (KafkaError, OSError) as error:
                        # A broker still starting, or topics not provisioned yet:
                        # keep trying until the deadline.
                        last_error = error
                        log.warning("quota topic %s not readable yet: %s", self._topic, error)
                        await asyncio.sleep(_START_RETRY_SECONDS)
        except TimeoutError:
            raise ServiceUnavailable(
                f"cannot read quota topic {self._topic!r} at {self._bootstrap_servers} within "
                f"{self._start_timeout:g} s" + (f": {last_error}" if last_error else ""),
                details={"topic": self._topic, "retriable": True},
            ) from last_error
        self._consumer = consumer
        self._healthy = True
        self._task = asyncio.create_task(self._read(consumer, end_offsets), name="quota-view")
        self._task.add_done_callback(self._on_task_done)
        try:
            async with asyncio.timeout(self._ready_timeout):
                await self._ready.wait()
        except TimeoutError:
            log.warning(
                "quota view not caught up with %s after %g s; answering from what it has read",
                self._topic,
                self._ready_timeout,
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        consumer, self._consumer = self._consumer, None
        self._healthy = False
        if task is not None:
            task.cancel()
            # Whatever the task ended with was logged by _on_task_done; only our
            # own cancellation, if we are being cancelled too, goes on.
            await asyncio.wait([task])
        if consumer is not None:
            await _stop_quietly(consumer)

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

    async def _connect(self) -> tuple[Any, dict[TopicPartition, int]]:
        """A consumer assigned every partition from the beginning, and the end offsets now."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap_servers,
            client_id=self._client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # The quota ledger may publish in transactions: never count an aborted snapshot.
            isolation_level="read_committed",
        )
        try:
            await consumer.start()
            partitions = await self._assign_all(consumer)
            await consumer.seek_to_beginning(*partitions)
            end_offsets: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        except BaseException:
            await _stop_quietly(consumer)
            raise
        return consumer, end_offsets

    async def _assign_all(self, consumer: Any) -> list[TopicPartition]:
        # consumer.topics() fetches the same metadata but returns only names, and
        # partitions_for_topic() knows only topics the client already tracks.
        cluster = await consumer._client.fetch_all_metadata()
        numbers = cluster.partitions_for_topic(self._topic)
        if not numbers:
            raise KafkaError(f"topic {self._topic!r} does not exist")
        partitions = [TopicPartition(self._topic, number) for number in sorted(numbers)]
        consumer.assign(partitions)
        return partitions

    async def _read(self, consumer: Any, end_offsets: dict[TopicPartition, int]) -> None:
        behind = {tp: end for tp, end in end_offsets.items() if end > 0}
        failures = 0
        while True:
            try:
                for tp in list(behind):
                    if await consumer.position(tp) >= behind[tp]:
                        del behind[tp]
                if not behind and not self._ready.is_set():
                    log.info("quota view caught up: %d users", len(self._snapshots))
                    self._ready.set()
                batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
                for records in batches.values():
                    for record in records:
                        self._apply(record)
            except Exception as error:
                # Kafka errors and bugs alike: keep the view alive, but visibly unhealthy.
                failures += 1
                self._healthy = False
                self._last_error = f"{type(error).__name__}: {error}"
                delay = min(_MAX_BACKOFF_SECONDS, 0.5 * 2 ** min(failures, 6))
                log.exception("reading %s failed (retrying in %g s)", self._topic, delay)
                await asyncio.sleep(delay)
            else:
                failures = 0
                self._healthy = True
                self._last_error = None

    def _apply(self, record: Any) -> None:
        if record.value is None:
            # A tombstone: compaction will forget this user, and so do we.
            if record.key is not None:
                self._snapshots.pop(record.key.decode("utf-8", errors="replace"), None)
            return
        try:
            event = decode(record.value, record.headers)
        except InvalidEvent as error:
            log.warning(
                "skipping an invalid record at %s[%d]@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                error,
            )
            return
        if isinstance(event, QuotaUpdated):
            self._snapshots[event.user_id] = event

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        self._healthy = False
        self._last_error = repr(error) if error else "the reading task ended"
        log.error("the quota view's reading task stopped", exc_info=error)


async def _stop_quietly(consumer: Any) -> None:
    try:
        async with asyncio.timeout(10.0):
            await consumer.stop()
    except (TimeoutError, KafkaError, OSError) as error:
        log.warning("could not close the quota topic consumer: %s", error)
