"""The consumer runtime: one `ConsumerApp` on one `GroupConsumer`, Kafka or the in-process bus.

`ConsumerRuntime` is the member's `RebalanceListener`: build the group
consumer with `listener=runtime`, then `await runtime.run(consumer, stop)`.
`run` joins the group and fetches until `stop` is set. Each assigned
partition gets a `PartitionWorker` (after `app.on_assigned`; what the member
fetches for it before then is held, and the partition paused, until the
worker exists); each batch goes to its partition's worker, and a partition
whose worker is full is paused while `getmany` goes on being called, so the
member stays in the group. A housekeeping task commits every partition's finished prefix every
`commit_interval_seconds` and refreshes the lag gauges. On revocation (and
on stop, which revokes everything) the partitions' workers are drained
within `drain_seconds`, what finished is committed, then `app.on_revoked`
is told; `run` then leaves the group.

How it fails: a fetch error that is retriable is logged and fetching goes on
after a pause; anything else ends `run` with that error after the drain. A
commit that fails is logged and tried again at the next interval (what is not
committed is delivered again; apps de-duplicate). A worker that fails (a
dead letter that cannot be written, a bug), `app.on_assigned` or
`app.on_revoked` raising, or the housekeeping task failing: the failure is
recorded, fetching stops, and `run` raises it after draining the rest.
`RecordsExpired` ends `run` too: accepting lost records is an operator's call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence

import msgspec

from consumers.runtime.app import ConsumerApp
from consumers.runtime.deadletter import DeadLetters
from consumers.runtime.handling import RecordHandling
from consumers.runtime.metrics import ConsumerMetrics
from consumers.runtime.partition import PartitionWorker
from consumers.runtime.retries import RetryPolicy
from infra.errors import PartitionNotAssigned, ServiceError
from infra.feeds import EndOffsets, GroupConsumer, Record, RecordPublisher, TopicPartition

log = logging.getLogger(__name__)


class RuntimeOptions(msgspec.Struct, frozen=True, kw_only=True):
    drain_seconds: float = 10.0
    commit_interval_seconds: float = 2.0
    lag_interval_seconds: float = 10.0
    poll_seconds: float = 0.5
    max_records: int = 500
    fetch_retry_seconds: float = 1.0
    retry: RetryPolicy = RetryPolicy()


class ConsumerRuntime:
    """Runs one app; also the `RebalanceListener` of the member it runs on."""

    def __init__(
        self,
        app: ConsumerApp,
        publisher: RecordPublisher,
        dead_letter_topic: str,
        *,
        options: RuntimeOptions | None = None,
        metrics: ConsumerMetrics | None = None,
    ) -> None:
        if app.max_in_flight < 1:
            raise ValueError(f"{app.name}: max_in_flight must be at least 1")
        self.app = app
        self.options = options or RuntimeOptions()
        self.metrics = metrics or ConsumerMetrics(app.name)
        dead_letters = DeadLetters(
            publisher, dead_letter_topic, consumer=app.name, policy=self.options.retry
        )
        self._handling = RecordHandling(app, dead_letters, self.metrics, self.options.retry)
        self._consumer: GroupConsumer | None = None
        self._workers: dict[TopicPartition, PartitionWorker] = {}
        self._paused: set[TopicPartition] = set()
        # Partitions whose `app.on_assigned` is running -> records fetched for them meanwhile.
        self._early: dict[TopicPartition, list[Record]] = {}
        # One commit at a time: two in flight for one partition could land in either order.
        self._commit_lock = asyncio.Lock()
        self._failure: BaseException | None = None
        self._failed = asyncio.Event()
        self.ready = False
        self.last_poll: float | None = None
        self.last_error: str | None = None

    @property
    def failure(self) -> BaseException | None:
        return self._failure

    @property
    def workers(self) -> Mapping[TopicPartition, PartitionWorker]:
        return self._workers

    async def run(
        self,
        consumer: GroupConsumer,
        stop: asyncio.Event,
        *,
        end_offsets: EndOffsets | None = None,
    ) -> None:
        """Join, fetch and hand out until `stop` is set (or a failure), drain, commit, leave."""
        self._consumer = consumer
        await consumer.start()
        housekeeping = asyncio.create_task(
            self._housekeeping(consumer, end_offsets), name=f"{self.app.name} housekeeping"
        )
        housekeeping.add_done_callback(self._watch)
        try:
            self.ready = True
            await self._fetch_until(consumer, stop)
        finally:
            self.ready = False
            housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await housekeeping
            # Revokes what is still held: on_revoked drains, commits and tells the app.
            await consumer.stop()
            self._consumer = None
        if self._failure is not None:
            raise self._failure

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        # The member may fetch these partitions while the app is still getting ready: what
        # it returns meanwhile waits here (its position has moved past it, so dropping it
        # would lose it until the next rebalance).
        for partition in partitions:
            self._paused.discard(partition)
            self._early[partition] = []
        try:
            await self.app.on_assigned(partitions)
        except Exception as error:
            for partition in partitions:
                self._early.pop(partition, None)
            # Without its state loaded the app must not see these records: stop instead.
            self._fail(error, f"{self.app.name}.on_assigned failed")
            return
        for partition in partitions:
            worker = PartitionWorker(
                partition,
                self._handling,
                max_in_flight=self.app.max_in_flight,
                on_room=self._resume,
            )
            worker.task.add_done_callback(self._watch)
            self._workers[partition] = worker
            worker.submit(self._early.pop(partition, []))
            if not worker.full:
                self._resume(partition)
        log.info("%s assigned %s", self.app.name, _names(partitions))

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        workers = [self._workers[p] for p in partitions if p in self._workers]
        await asyncio.gather(*(self._drain(worker) for worker in workers))
        try:
            await self._commit(workers)
        except ServiceError as error:
            log.warning("%s could not commit on revocation: %s", self.app.name, error.message)
        for worker in workers:
            del self._workers[worker.partition]
            self._paused.discard(worker.partition)
            self.metrics.forget(worker.partition)
        try:
            await self.app.on_revoked(partitions)
        except Exception as error:
            self._fail(error, f"{self.app.name}.on_revoked failed")
        log.info("%s revoked %s", self.app.name, _names(partitions))

    async def commit_finished(self) -> None:
        """Commit the finished prefix of every partition now (the housekeeping task does it too)."""
        await self._commit(list(self._workers.values()))

    async def _fetch_until(self, consumer: GroupConsumer, stop: asyncio.Event) -> None:
        while not stop.is_set() and self._failure is None:
            try:
                batch = await consumer.getmany(
                    max_wait=self.options.poll_seconds, max_records=self.options.max_records
                )
            except ServiceError as error:
                self.last_error = error.message
                if not error.retriable:
                    raise
                log.warning("%s cannot fetch now: %s", self.app.name, error.message)
                await _first(stop, self._failed, seconds=self.options.fetch_retry_seconds)
                continue
            self.last_poll = time.monotonic()
            self.last_error = None
            for partition, records in batch.items():
                self._hand_out(consumer, partition, records)

    def _hand_out(
        self, consumer: GroupConsumer, partition: TopicPartition, records: Sequence[Record]
    ) -> None:
        early = self._early.get(partition)
        if early is not None:
            # Assigned, but the app is not ready yet: keep them, and fetch no more for now.
            early.extend(records)
            if partition not in self._paused:
                with contextlib.suppress(PartitionNotAssigned):
                    consumer.pause(partition)
                    self._paused.add(partition)
            return
        worker = self._workers.get(partition)
        if worker is None:
            # Revoked between the fetch and now (or on_assigned failed): not tracked, so not
            # committed; whoever reads the partition next reads these again.
            log.info(
                "%s drops %d records of %s: not assigned",
                self.app.name,
                len(records),
                _names({partition}),
            )
            return
        worker.submit(records)
        if worker.full and partition not in self._paused:
            with contextlib.suppress(PartitionNotAssigned):
                consumer.pause(partition)
                self._paused.add(partition)

    def _resume(self, partition: TopicPartition) -> None:
        if partition not in self._paused or self._consumer is None:
            return
        self._paused.discard(partition)
        with contextlib.suppress(PartitionNotAssigned, ServiceError):
            self._consumer.resume(partition)

    async def _drain(self, worker: PartitionWorker) -> None:
        # A worker whose task failed raises here: `_watch` has recorded and logged it already.
        with contextlib.suppress(Exception):
            await worker.drain(self.options.drain_seconds)

    async def _commit(self, workers: Sequence[PartitionWorker]) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        async with self._commit_lock:
            offsets = {
                worker.partition: offset
                for worker in workers
                if (offset := worker.offsets.to_commit()) is not None
            }
            if not offsets:
                return
            await consumer.commit(offsets)
            for worker in workers:
                if worker.partition in offsets:
                    worker.offsets.mark_committed(offsets[worker.partition])

    async def _housekeeping(self, consumer: GroupConsumer, end_offsets: EndOffsets | None) -> None:
        next_lag = 0.0
        while True:
            await asyncio.sleep(self.options.commit_interval_seconds)
            try:
                await self.commit_finished()
            except ServiceError as error:
                log.warning("%s could not commit: %s", self.app.name, error.message)
            now = time.monotonic()
            if end_offsets is not None and now >= next_lag:
                next_lag = now + self.options.lag_interval_seconds
                try:
                    await self._measure_lag(consumer, end_offsets)
                except ServiceError as error:
                    log.warning("%s could not measure lag: %s", self.app.name, error.message)

    async def _measure_lag(self, consumer: GroupConsumer, end_offsets: EndOffsets) -> None:
        ends = await end_offsets.end_offsets(frozenset(self._workers))
        for partition, end in ends.items():
            worker = self._workers.get(partition)
            if worker is None:
                continue
            committed = worker.offsets.committed
            if committed is None:
                committed = await consumer.committed(partition)
                if committed is not None and worker.offsets.committed is None:
                    worker.offsets.mark_committed(committed)
            self.metrics.set_lag(partition, max(0, end - (committed or 0)))

    def _watch(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._fail(error, f"{self.app.name}: {task.get_name()} failed")

    def _fail(self, error: BaseException, what: str) -> None:
        # A worker's task group wraps its one failure; the failure itself is what to raise.
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        log.error("%s; stopping", what, exc_info=error)
        if self._failure is None:
            self._failure = error
        self._failed.set()


async def _first(*events: asyncio.Event, seconds: float) -> None:
    """Until one of `events` is set or `seconds` pass."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


def _names(partitions: frozenset[TopicPartition] | set[TopicPartition]) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in sorted(partitions)) or "nothing"
