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
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from infra.kafka import internals
from ingest.errors import ServiceUnavailable
from ingest.usecases.quota import SnapshotQuotaView
from schemas import Topics

log = logging.getLogger(__name__)

_MAX_BACKOFF_SECONDS = 30.0
_START_RETRY_SECONDS = 1.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class KafkaQuotaView(SnapshotQuotaView):
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
        super().__init__(
            topics.quota,
            quota_bytes=quota_bytes,
            quota_uploads=quota_uploads,
            period_days=period_days,
            clock=clock,
        )
        self._bootstrap_servers = bootstrap_servers
        self._start_timeout = start_timeout
        self._ready_timeout = ready_timeout
        self._client_id = client_id
        self._consumer: Any = None

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
                details={"topic": self._topic},
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
        cluster = await internals.cluster_metadata(consumer)
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
                if not behind:
                    self._mark_ready()
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
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        self._apply_record(record.key, record.value, record.headers, where)


async def _stop_quietly(consumer: Any) -> None:
    try:
        async with asyncio.timeout(10.0):
            await consumer.stop()
    except (TimeoutError, KafkaError, OSError) as error:
        log.warning("could not close the quota topic consumer: %s", error)
