"""One member of a Kafka consumer group that commits explicitly: a `GroupConsumer`.

A thin layer over AIOKafkaConsumer with a group id. Auto-commit is off: the
caller commits the offsets it has finished (`commit`). Only committed records
are read (`read_committed`). Partitions are assigned by the range assignor,
so topics keyed alike with the same partition count (uploads and quota
commands, both keyed by user) give a member the same partition numbers of
each. A group that never committed on a partition starts at its oldest record.

The listener hears aiokafka's rebalance callbacks, from aiokafka's
coordination task: on every rebalance Kafka revokes all of a member's
partitions, then assigns its new set (which may include old ones; their
positions restart at the committed offsets). `stop` also hands the listener
what the member still holds (`on_revoked`), which aiokafka does not, so the
caller commits in one place.

How it fails: `start` keeps trying until `start_timeout`, then raises
ServiceUnavailable (a topic that does not exist looks like that too).
`commit` raises PartitionNotAssigned when the group has rebalanced the
partition away (Kafka's CommitFailedError) or never gave it, and
ServiceUnavailable when the broker does not confirm within `commit_timeout`
(aiokafka alone would retry for ever) or refuses. `getmany` raises
RecordsExpired when a position fell out of the topic's retention (the
consumer runs with `auto_offset_reset="none"` so that Kafka tells instead of
silently jumping), and ServiceUnavailable for other Kafka errors and once
stopped. `stop` never hangs: after `stop_timeout` it gives up, logged. A
listener that raises is logged and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KafkaPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import (
    CommitFailedError,
    ConsumerStoppedError,
    IllegalStateError,
    KafkaError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
)

from infra.describe import in_words
from infra.errors import PartitionNotAssigned, RecordsExpired, ServiceUnavailable
from infra.feeds import EndOffsets, GroupConsumer, RebalanceListener, TopicPartition
from infra.kafka import internals
from infra.kafka.reaching import until_reachable

log = logging.getLogger(__name__)

_REBALANCE_GRACE_SECONDS: Final = 0.1


class KafkaGroupConsumer:
    """`infra.feeds.GroupConsumer` over one AIOKafkaConsumer; see the module docstring."""

    def __init__(
        self,
        bootstrap_servers: str,
        group_id: str,
        *topics: str,
        listener: RebalanceListener | None = None,
        start_timeout: float = 30.0,
        commit_timeout: float = 10.0,
        stop_timeout: float = 10.0,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        client_id: str | None = None,
    ) -> None:
        if not group_id:
            raise ValueError("a consumer group needs a name")
        if not topics:
            raise ValueError("a group consumer reads at least one topic")
        self._bootstrap_servers = bootstrap_servers
        self._group_id = group_id
        self._topics = frozenset(topics)
        self._listener = listener
        self._start_timeout = start_timeout
        self._commit_timeout = commit_timeout
        self._stop_timeout = stop_timeout
        self._session_timeout_ms = session_timeout_ms
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self._client_id = client_id
        self._consumer: Any = None

    @property
    def group_id(self) -> str:
        return self._group_id

    @property
    def topics(self) -> frozenset[str]:
        return self._topics

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
        """Join the group; returns once the first assignment (maybe empty) has arrived."""
        if self._consumer is not None:
            return
        await until_reachable(
            self._join,
            within=self._start_timeout,
            what=(
                f"group {self._group_id!r} could not join at {self._bootstrap_servers} for "
                f"{', '.join(sorted(self._topics))} (are the topics provisioned?)"
            ),
            details={"group_id": self._group_id, "topics": sorted(self._topics)},
        )

    async def _join(self) -> None:
        consumer = self._new_consumer()
        # Set first: the listener may commit or seek while start waits.
        self._consumer = consumer
        try:
            await consumer.start()
        except BaseException:
            self._consumer = None
            await internals.stop_consumer(consumer, self._stop_timeout)
            raise

    async def stop(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        try:
            held = self.assignment()
            if held:
                await self._tell_revoked(held)
        finally:
            self._consumer = None
            await internals.stop_consumer(consumer, self._stop_timeout)

    def assignment(self) -> frozenset[TopicPartition]:
        if self._consumer is None:
            return frozenset()
        return _ours(self._consumer.assignment())

    async def getmany(
        self, *, max_wait: float = 1.0, max_records: int = 500
    ) -> dict[TopicPartition, list[Any]]:
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        while True:
            consumer = self._running()
            remaining = max(0.0, deadline - loop.time())
            try:
                # aiokafka waits out a rebalance whatever its timeout; this bound holds.
                async with asyncio.timeout(remaining + _REBALANCE_GRACE_SECONDS):
                    batches = await consumer.getmany(
                        timeout_ms=int(remaining * 1000), max_records=max_records
                    )
            except TimeoutError:
                return {}
            except NoOffsetForPartitionError as error:
                # The group never committed here: start at the oldest record, then read on.
                await self._start_at_beginning(consumer, error.args[0])
                continue
            except OffsetOutOfRangeError as error:
                raise self._expired(error) from error
            except ConsumerStoppedError:
                raise ServiceUnavailable(
                    f"the member of group {self._group_id!r} is stopped", retriable=False
                ) from None
            except KafkaError as error:
                raise ServiceUnavailable(
                    f"group {self._group_id!r} cannot read: {in_words(error)}",
                    details={"group_id": self._group_id},
                    retriable=bool(error.retriable),
                ) from error
            return {
                TopicPartition(tp.topic, tp.partition): records for tp, records in batches.items()
            }

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        consumer = self._running()
        if not offsets:
            return
        for partition, offset in offsets.items():
            if offset < 0:
                raise ValueError(f"cannot commit a negative offset for {partition}")
        theirs = {_theirs(partition): offset for partition, offset in offsets.items()}
        try:
            async with asyncio.timeout(self._commit_timeout):
                await consumer.commit(theirs)
        except (CommitFailedError, IllegalStateError) as error:
            raise PartitionNotAssigned(
                f"group {self._group_id!r} cannot commit {sorted(offsets)}: {in_words(error)}",
                details={"group_id": self._group_id},
            ) from error
        except TimeoutError:
            raise ServiceUnavailable(
                f"Kafka did not confirm the commit of group {self._group_id!r} within "
                f"{self._commit_timeout:g} s",
                details={"group_id": self._group_id},
            ) from None
        except KafkaError as error:
            raise ServiceUnavailable(
                f"Kafka refused the commit of group {self._group_id!r}: {in_words(error)}",
                details={"group_id": self._group_id},
                retriable=bool(error.retriable),
            ) from error

    async def committed(self, partition: TopicPartition) -> int | None:
        consumer = self._running()
        try:
            async with asyncio.timeout(self._commit_timeout):
                offset: int | None = await consumer.committed(_theirs(partition))
        except (TimeoutError, KafkaError) as error:
            raise ServiceUnavailable(
                f"Kafka did not tell the committed offset of group {self._group_id!r} "
                f"on {partition.topic}[{partition.partition}]: {in_words(error)}",
                details={"group_id": self._group_id},
            ) from error
        return offset

    async def end_offsets(self, partitions: frozenset[TopicPartition]) -> dict[TopicPartition, int]:
        """`infra.feeds.EndOffsets`: the last stable offset of each partition (read_committed)."""
        consumer = self._running()
        if not partitions:
            return {}
        try:
            async with asyncio.timeout(self._commit_timeout):
                ends = await consumer.end_offsets([_theirs(p) for p in partitions])
        except (TimeoutError, KafkaError) as error:
            raise ServiceUnavailable(
                f"Kafka did not tell the end offsets for group {self._group_id!r}: "
                f"{in_words(error)}",
                details={"group_id": self._group_id},
            ) from error
        return {TopicPartition(tp.topic, tp.partition): int(end) for tp, end in ends.items()}

    def seek(self, partition: TopicPartition, offset: int) -> None:
        try:
            self._running().seek(_theirs(partition), offset)
        except IllegalStateError as error:
            raise self._not_assigned(partition, error) from error

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        consumer = self._running()
        chosen = partitions or tuple(self.assignment())
        try:
            await consumer.seek_to_beginning(*(_theirs(partition) for partition in chosen))
        except IllegalStateError as error:
            raise self._not_assigned(chosen[0], error) from error

    def pause(self, *partitions: TopicPartition) -> None:
        try:
            self._running().pause(*(_theirs(partition) for partition in partitions))
        except IllegalStateError as error:
            raise self._not_assigned(partitions[0], error) from error

    def resume(self, *partitions: TopicPartition) -> None:
        try:
            self._running().resume(*(_theirs(partition) for partition in partitions))
        except IllegalStateError as error:
            raise self._not_assigned(partitions[0], error) from error

    def _new_consumer(self) -> Any:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap_servers,
            client_id=self._client_id,
            group_id=self._group_id,
            enable_auto_commit=False,
            # "none": a position out of range raises instead of jumping (see getmany).
            auto_offset_reset="none",
            isolation_level="read_committed",
            partition_assignment_strategy=(RangePartitionAssignor,),
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=self._heartbeat_interval_ms,
        )
        consumer.subscribe(sorted(self._topics), listener=_Relay(self))
        return consumer

    def _running(self) -> Any:
        if self._consumer is None:
            raise ServiceUnavailable(
                f"the member of group {self._group_id!r} is not started", retriable=False
            )
        return self._consumer

    async def _start_at_beginning(self, consumer: Any, partition: Any) -> None:
        # Revoked meanwhile: its next owner starts it.
        with contextlib.suppress(IllegalStateError):
            await consumer.seek_to_beginning(partition)

    def _expired(self, error: OffsetOutOfRangeError) -> RecordsExpired:
        positions = error.args[0] if error.args and isinstance(error.args[0], dict) else {}
        where = ", ".join(
            f"{tp.topic}[{tp.partition}]@{offset}" for tp, offset in positions.items()
        )
        return RecordsExpired(
            f"group {self._group_id!r} is at a position Kafka no longer keeps ({where}): "
            "retention removed records before they were read",
            details={"group_id": self._group_id, "positions": where},
        )

    def _not_assigned(
        self, partition: TopicPartition, error: BaseException
    ) -> PartitionNotAssigned:
        return PartitionNotAssigned(
            f"{partition.topic}[{partition.partition}] is not assigned to this member of group "
            f"{self._group_id!r}: {in_words(error)}",
            details={"group_id": self._group_id, "topic": partition.topic},
        )

    async def _tell_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        if self._listener is None or not partitions:
            return
        try:
            await self._listener.on_assigned(partitions)
        except Exception:
            log.exception("the rebalance listener of group %s failed on_assigned", self._group_id)

    async def _tell_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        if self._listener is None or not partitions:
            return
        try:
            await self._listener.on_revoked(partitions)
        except Exception:
            log.exception("the rebalance listener of group %s failed on_revoked", self._group_id)


class _Relay(ConsumerRebalanceListener):  # type: ignore[misc]
    """aiokafka's listener interface, passing what changed on to the member's own listener."""

    def __init__(self, member: KafkaGroupConsumer) -> None:
        self._member = member

    async def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        await self._member._tell_revoked(_ours(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        await self._member._tell_assigned(_ours(assigned))


def _ours(partitions: Iterable[Any]) -> frozenset[TopicPartition]:
    return frozenset(TopicPartition(tp.topic, tp.partition) for tp in partitions)


def _theirs(partition: TopicPartition) -> Any:
    return KafkaPartition(partition.topic, partition.partition)


if TYPE_CHECKING:

    def _implements(member: KafkaGroupConsumer) -> GroupConsumer:
        return member

    def _tells_ends(member: KafkaGroupConsumer) -> EndOffsets:
        return member
