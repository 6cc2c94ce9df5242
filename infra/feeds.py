"""What reading a topic looks like, whether the topic lives in Kafka or on the in-process bus.

Two ways to read, each one Protocol with two implementations (`infra.kafka`
and `infra.bus`), so that code written against them runs the same on both:

- a `TopicReader` reads every partition of one topic from the beginning,
  without a consumer group (every process needs every record: the quota view,
  a replay), hands each record to a `RecordHandler`, and says when it has read
  what the topic held when it started (`ready`) and whether it is still
  reading (`healthy`, `last_error`);
- a `GroupConsumer` is one member of a consumer group: the group's partitions
  are shared among its members, each member commits the offsets it has
  finished explicitly (`commit`, the offset of the next record to read, as in
  Kafka), and a member that takes over a partition starts at the group's
  committed offset, so records not committed are delivered again. A
  `RebalanceListener` hears which partitions the member gains and loses.

Three small capabilities stand beside them, each its own Protocol: `EndOffsets`
(where each partition ends now, for consumer lag), `RecordPublisher`
(append one raw record, e.g. a dead letter, keeping its key and headers) and
`RangeReader` (read given offset ranges of partitions once, e.g. to replay
what a reconnecting WebSocket client missed).

A topic reader may also start later than the beginning (its constructor's
`since`: the first record appended at or after a time) and tells where it
is (`positions`), so that a reader of offsets can pick up exactly there.

How it fails: these are interfaces; each implementation documents its errors.
Both raise the errors of `infra.errors`: ServiceUnavailable when the backend
cannot be reached or is closed, PartitionNotAssigned when a member commits or
seeks a partition it does not own (any more), RecordsExpired when a member's
position (or a range to read) fell behind what retention keeps. `hand_over` keeps a failing
handler from stopping a reader: the failure is logged and the record skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, Protocol

log = logging.getLogger(__name__)


class TopicPartition(NamedTuple):
    """A partition of a topic; equal to (and hashed like) aiokafka's TopicPartition."""

    topic: str
    partition: int


class Record(Protocol):
    """One record as a reader gets it: the fields an aiokafka ConsumerRecord and a bus record share.

    `value` is None for a tombstone (a Kafka record with no value; the bus has none).
    """

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...

    @property
    def timestamp(self) -> int:
        """When the record was appended (Kafka: the producer's create time), Unix milliseconds."""
        ...


RecordHandler = Callable[[Record], None]
"""Takes one record a reader has read. Synchronous: it updates state in memory."""


def where(record: Record) -> str:
    """`topic[partition]@offset`, for log lines about one record."""
    return f"{record.topic}[{record.partition}]@{record.offset}"


def hand_over(handler: RecordHandler, record: Record) -> None:
    """Give the record to the handler; a handler that raises is logged and the record skipped.

    A reader must outlive one bad record or one bug in its handler: stopping
    would leave every later record unread.
    """
    try:
        handler(record)
    except Exception:
        log.exception("the handler failed on the record at %s; skipping it", where(record))


class TopicReader(Protocol):
    """Every partition of one topic, from the beginning, each record handed to a handler."""

    @property
    def topic(self) -> str: ...

    @property
    def ready(self) -> asyncio.Event:
        """Set once every record the topic held when the reader started has been handed over."""
        ...

    @property
    def healthy(self) -> bool:
        """False while reading fails, and when the reader is not running."""
        ...

    @property
    def last_error(self) -> str | None:
        """What went wrong last, while not healthy."""
        ...

    def positions(self) -> Mapping[TopicPartition, int]:
        """Per partition, the offset of the next record the handler may get.

        One past the last record handed over (already moved when the handler
        is called, so a handler reading it sees its own record as read), or
        where reading started. Empty before `start`.
        """
        ...

    async def start(self) -> None:
        """Start reading in a background task it owns; ServiceUnavailable if it cannot."""
        ...

    async def stop(self) -> None:
        """Stop reading; never hangs. Safe to call twice."""
        ...


class RebalanceListener(Protocol):
    """Hears the partitions a group member gains and loses, and is awaited before it goes on.

    `on_revoked` comes before another member may read the partitions: commit
    what is finished there. A member's `stop` calls it too, with everything
    the member still holds. Kafka revokes every partition of a member on each
    rebalance and then assigns its new set, which may include some of the old
    ones (read again from the committed offset); a listener must accept that.
    Kafka calls it from its coordination task, the bus from inside the
    member's `start`, `getmany` and `stop`: a listener may commit, seek and
    pause, but must not stop its member. Exceptions are logged, never raised.
    """

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None: ...

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None: ...


class GroupConsumer(Protocol):
    """One member of a consumer group reading some topics; see the module docstring."""

    @property
    def group_id(self) -> str: ...

    @property
    def topics(self) -> frozenset[str]: ...

    async def start(self) -> None:
        """Join the group and take a first assignment (possibly empty).

        ServiceUnavailable when the backend cannot be reached within the
        implementation's time limit.
        """
        ...

    async def stop(self) -> None:
        """Hand the listener what is still assigned (`on_revoked`), then leave; never hangs."""
        ...

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this member owns now."""
        ...

    async def getmany(
        self, *, max_wait: float = 1.0, max_records: int = 500
    ) -> Mapping[TopicPartition, Sequence[Record]]:
        """The next records of owned partitions, in offset order per partition.

        Waits at most `max_wait` seconds for some (a Kafka rebalance in
        progress counts as none); an empty mapping when none came. Moves each
        partition's position past what it returns (not its committed offset).
        RecordsExpired when a position is older than what the topic still
        keeps (seek to accept the loss).
        """
        ...

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Record, for the group, the offset of the next record to read in each partition.

        PartitionNotAssigned when this member does not own one of them (any more).
        """
        ...

    async def committed(self, partition: TopicPartition) -> int | None:
        """The group's committed offset of the partition; None when it has none."""
        ...

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read an owned partition from `offset` on (the committed offset does not change)."""
        ...

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        """Read owned partitions (all of them when none is named) from the oldest record kept."""
        ...

    def pause(self, *partitions: TopicPartition) -> None:
        """Return no records of these owned partitions until `resume` or their revocation.

        Keeps the member in its group while a partition's records wait for
        room downstream (a rebalance forgets it: pause again after `on_assigned`).
        """
        ...

    def resume(self, *partitions: TopicPartition) -> None: ...


class EndOffsets(Protocol):
    """Where partitions end now: the offset the next record will get (for consumer lag).

    On Kafka read with `read_committed` this is the last stable offset.
    ServiceUnavailable when the backend does not answer in time.
    """

    async def end_offsets(
        self, partitions: frozenset[TopicPartition]
    ) -> Mapping[TopicPartition, int]: ...


class OffsetRange(NamedTuple):
    """The records of a partition from `start` (included) to `end` (excluded)."""

    start: int
    end: int


class RangeReader(Protocol):
    """Reads given offset ranges of partitions once, without a consumer group (a replay).

    `read` hands each record of each range to `handler`, in offset order
    within a partition, one partition after another in the order of
    `ranges`. Records compaction removed are skipped, as in Kafka. Before
    reading anything it checks every range: RecordsExpired when a range
    starts before the oldest record its partition still keeps (retention
    removed records in it), naming the partitions. ServiceUnavailable when
    the backend cannot be reached or does not deliver the range in time.
    """

    async def read(
        self, ranges: Mapping[TopicPartition, OffsetRange], handler: RecordHandler
    ) -> None: ...

    async def close(self) -> None:
        """Release what it holds; later reads raise ServiceUnavailable. Never hangs."""
        ...


class RecordPublisher(Protocol):
    """Appends one raw record to a topic, as it is: key, value and headers untouched.

    Returns once the backend has it. EventDeliveryError (with `retriable`)
    when it does not within the implementation's time limit.
    """

    async def publish_record(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None: ...
