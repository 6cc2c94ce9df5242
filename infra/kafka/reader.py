"""Every record of one Kafka topic, handed to a handler: a `TopicReader` without consumer group.

A background task reads every partition of the topic from the beginning,
without a consumer group (every instance needs every record: the quota view
needs every user's snapshot), reading only committed records
(`read_committed`: a transactional producer's aborted records never count),
and hands each record to the handler (`infra.feeds.hand_over`). It is
`ready` once its position in every partition has reached the end the
partition had when it started. With `since` (Unix seconds) each partition
starts at its first record appended at or after that time (Kafka's
offsets-for-times), or at its end when it has none.

How it fails: `start` keeps trying to reach Kafka and the topic, and raises
ServiceUnavailable when it cannot within `start_timeout`; started without
waiting for the broker (`wait_for_broker=False`), it returns at once and
the task keeps trying (a broker down, a topic not yet provisioned), not
`healthy` meanwhile, with what stops it as `last_error`. Not catching up
within `ready_timeout` is only logged (reading goes on, `ready` is set
later). A failure while reading is logged and turns `healthy` false; the task
backs off and keeps reading. A handler that raises is logged and its record
skipped. Partitions added to the topic after `start` are not read until a
restart. `stop` never hangs.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from infra.describe import in_words
from infra.feeds import RecordHandler, TopicReader, hand_over
from infra.feeds import TopicPartition as FeedPartition
from infra.kafka import internals
from infra.kafka.reaching import keep_trying, until_reachable

log = logging.getLogger(__name__)

_MAX_BACKOFF_SECONDS: Final = 30.0
_STOP_SECONDS: Final = 10.0
_CONNECT_SECONDS: Final = 5.0
"""One attempt to connect in the background, and how long `start` waits for the first."""
_ENDED = "the reading task ended"


class KafkaTopicReader:
    """`infra.feeds.TopicReader` over one Kafka topic, read by an owned background task."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        handler: RecordHandler,
        *,
        start_timeout: float = 30.0,
        ready_timeout: float = 30.0,
        client_id: str | None = None,
        since: float | None = None,
        fetch_max_wait_ms: int = 500,
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic
        self._handler = handler
        self._since = since
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._positions: dict[FeedPartition, int] = {}
        self._start_timeout = start_timeout
        self._ready_timeout = ready_timeout
        self._client_id = client_id
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._reached = asyncio.Event()
        self._unreachable = asyncio.Event()
        """Set once connecting in the background has failed (the broker or topic is away)."""
        self._healthy = False
        self._last_error: str | None = None

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def ready(self) -> asyncio.Event:
        return self._ready

    @property
    def healthy(self) -> bool:
        return self._healthy and self._task is not None and not self._task.done()

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def positions(self) -> dict[FeedPartition, int]:
        return self._positions

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

    async def start(self, *, wait_for_broker: bool = True) -> None:
        """Read every partition from the beginning; wait a bounded time to catch up.

        Without `wait_for_broker`, return at once: the reading task connects first.
        """
        if self._task is not None:
            return
        self._ready.clear()
        if not wait_for_broker:
            self._last_error = f"not connected to Kafka at {self._bootstrap_servers} yet"
            self._task = asyncio.create_task(
                self._connect_then_read(), name=f"kafka-reader-{self._topic}"
            )
            self._task.add_done_callback(self._on_task_done)
            # A reachable topic is read up to its end first, as when waiting for it.
            await _until(self._reached, self._unreachable, task=self._task, within=_CONNECT_SECONDS)
            if self._reached.is_set():
                await self._catch_up()
            return
        # Topics not provisioned yet fail like a broker still starting: both are retried.
        consumer, starts, end_offsets = await until_reachable(
            self._connect,
            within=self._start_timeout,
            what=f"reading topic {self._topic!r} at {self._bootstrap_servers}",
            details={"topic": self._topic},
        )
        self._connected(consumer, starts)
        self._task = asyncio.create_task(
            self._read(consumer, end_offsets), name=f"kafka-reader-{self._topic}"
        )
        self._task.add_done_callback(self._on_task_done)
        await self._catch_up()

    async def _catch_up(self) -> None:
        if not await _until(self._ready, task=self._task, within=self._ready_timeout):
            log.warning(
                "reader not caught up with %s after %g s; handing over what it has read",
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
            await internals.stop_consumer(consumer, _STOP_SECONDS)

    async def _connect_then_read(self) -> None:
        async def attempt() -> tuple[Any, dict[TopicPartition, int], dict[TopicPartition, int]]:
            try:
                # Bounded: an address that accepts but never answers would hold it 40 s.
                async with asyncio.timeout(_CONNECT_SECONDS):
                    return await self._connect()
            except (KafkaError, OSError, TimeoutError) as error:
                self._last_error = in_words(error)
                self._unreachable.set()
                raise

        consumer, starts, end_offsets = await keep_trying(
            attempt, what=f"reading topic {self._topic!r} at {self._bootstrap_servers}"
        )
        self._connected(consumer, starts)
        self._reached.set()
        await self._read(consumer, end_offsets)

    def _connected(self, consumer: Any, starts: dict[TopicPartition, int]) -> None:
        self._consumer = consumer
        self._positions.update(
            {FeedPartition(tp.topic, tp.partition): o for tp, o in starts.items()}
        )
        self._healthy = True
        self._last_error = None

    async def _connect(
        self,
    ) -> tuple[Any, dict[TopicPartition, int], dict[TopicPartition, int]]:
        """A consumer assigned every partition at its start, the starts, and the ends now."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap_servers,
            client_id=self._client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # A transactional producer's aborted records must never count.
            isolation_level="read_committed",
            fetch_max_wait_ms=self._fetch_max_wait_ms,
        )
        try:
            await consumer.start()
            partitions = await self._assign_all(consumer)
            end_offsets: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
            starts: dict[TopicPartition, int] = await consumer.beginning_offsets(partitions)
            if self._since is not None:
                found = await consumer.offsets_for_times(
                    {tp: int(self._since * 1000) for tp in partitions}
                )
                starts = {
                    tp: found[tp].offset if found.get(tp) is not None else end_offsets[tp]
                    for tp in partitions
                }
            for tp in partitions:
                consumer.seek(tp, starts[tp])
        except BaseException:
            await internals.stop_consumer(consumer, _STOP_SECONDS)
            raise
        return consumer, starts, end_offsets

    async def _assign_all(self, consumer: Any) -> list[TopicPartition]:
        cluster = await internals.cluster_metadata(consumer)
        numbers = cluster.partitions_for_topic(self._topic)
        if not numbers:
            raise KafkaError(f"topic {self._topic!r} does not exist")
        partitions = [TopicPartition(self._topic, number) for number in sorted(numbers)]
        consumer.assign(partitions)
        return partitions

    async def _read(self, consumer: Any, end_offsets: dict[TopicPartition, int]) -> None:
        behind = {tp: end for tp, end in end_offsets.items() if end > self._positions[tp]}
        failures = 0
        while True:
            try:
                for tp in list(behind):
                    if await consumer.position(tp) >= behind[tp]:
                        del behind[tp]
                if not behind:
                    self._mark_ready()
                batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
                for partition, records in batches.items():
                    for record in records:
                        self._positions[partition] = record.offset + 1
                        hand_over(self._handler, record)
            except Exception as error:
                # Kafka errors and bugs alike: keep reading, but visibly unhealthy.
                failures += 1
                self._healthy = False
                self._last_error = in_words(error)
                delay = min(_MAX_BACKOFF_SECONDS, 0.5 * 2 ** min(failures, 6))
                log.exception("reading %s failed (retrying in %g s)", self._topic, delay)
                await asyncio.sleep(delay)
            else:
                failures = 0
                self._healthy = True
                self._last_error = None

    def _mark_ready(self) -> None:
        if not self._ready.is_set():
            log.info("reader caught up with %s", self._topic)
            self._ready.set()

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        self._healthy = False
        self._last_error = in_words(error) if error else _ENDED
        if error is not None:
            log.error("the reader of %s stopped", self._topic, exc_info=error)
        else:
            log.info("the reader of %s stopped: %s", self._topic, _ENDED)


async def _until(*events: asyncio.Event, task: asyncio.Task[None] | None, within: float) -> bool:
    """Whether one of `events` was set (or `task` ended) within `within` seconds."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        done, _ = await asyncio.wait(
            [*waits, *([task] if task is not None else [])],
            timeout=within,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        for wait in waits:
            wait.cancel()
    return bool(done)


if TYPE_CHECKING:

    def _implements(reader: KafkaTopicReader) -> TopicReader:
        return reader
