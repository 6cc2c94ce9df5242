"""The quota consumer: a `ConsumerApp` keeping the ledger of the users of its partitions.

It reads completed uploads (`ingest.uploads`) and limit commands
(`ingest.quota.commands`), applies each through the pure ledger
(`consumers.quota.ledger`) and, whenever a user's quota changes, publishes the
user's full snapshot, ledger included, to the compacted `ingest.quota`.

Exactly-once in effect, without transactions: the snapshots are the state's
changelog. When partitions are assigned, the state of their users is rebuilt
from the latest snapshots (`consumers.quota.snapshots`); a record at or below
the offset a user's snapshot says it applied is skipped, and an upload already
listed is not charged again. So a crash between publishing a snapshot and
committing the record, a restart, or a rebalance that hands the partition to
another instance only makes a record be read again, never counted again.

The three user-keyed topics must have the same partition count (they do in
`schemas.topics`; `quota_app` refuses otherwise): the range assignor then gives
one instance the same partition number of both inputs, so each user's state
has one writer, and that user's snapshots are in the quota partition with
that number. A partition number's records are handled one at a time (a lock
across both inputs), so a user's upload and command never race.

How it fails: when the snapshots of an assigned partition cannot be loaded,
`handle` raises ServiceUnavailable (retriable: the runtime retries, and the
partition waits) rather than count from an empty state; when publishing a
snapshot fails, the error propagates and the state in memory is left as it
was, so the retry applies the record again. An instance that lost its
partitions without hearing it (a zombie, e.g. stalled past the session
timeout) may still publish one stale snapshot; the README says what that
costs and why Kafka transactions in aiokafka would not prevent it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from consumers.quota.ledger import QuotaDefaults, QuotaLedger, UserQuota
from consumers.quota.snapshots import ReaderFactory, load_snapshots
from infra.errors import ServiceUnavailable
from infra.feeds import Record, TopicPartition
from schemas import TOPIC_SPECS, Event, QuotaLimitsSet, Topics, UploadCompleted

if TYPE_CHECKING:
    from consumers.runtime.app import ConsumerApp

log = logging.getLogger(__name__)

_USER_KEYED = ("uploads", "quota.commands", "quota")


class SnapshotSink(Protocol):
    """Where snapshots go: the `emit` of the Kafka event sink or of the in-process bus."""

    async def emit(self, event: Event) -> None: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


class QuotaApp:
    """`consumers.runtime.app.ConsumerApp` of the quota ledger; see the module docstring."""

    def __init__(
        self,
        topics: Topics,
        sink: SnapshotSink,
        open_reader: ReaderFactory,
        ledger: QuotaLedger,
        *,
        load_timeout: float = 60.0,
        clock: Callable[[], datetime] = _utc_now,
        name: str = "quota",
    ) -> None:
        self._names = topics
        self._sink = sink
        self._open_reader = open_reader
        self._ledger = ledger
        self._load_timeout = load_timeout
        self._clock = clock
        self._name = name
        # Partition number -> user id -> state; a number is here only once loaded.
        self._states: dict[int, dict[str, UserQuota]] = {}
        self._owned: set[int] = set()
        self._locks: dict[int, asyncio.Lock] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def topics(self) -> frozenset[str]:
        return frozenset({self._names.uploads, self._names.quota_commands})

    @property
    def max_in_flight(self) -> int:
        return 1  # a user's events apply in order

    def state_of(self, user_id: str) -> UserQuota | None:
        """The state of a user of an owned, loaded partition (for tests and diagnostics)."""
        for users in self._states.values():
            if user_id in users:
                return users[user_id]
        return None

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        numbers = self._numbers(partitions) - self._owned
        self._owned |= numbers
        for number in sorted(numbers):
            # Always read again: another instance may have moved on since we last held it.
            self._states.pop(number, None)
        try:
            await self._load(numbers)
        except ServiceUnavailable as error:
            # `handle` loads what is missing before it counts anything.
            log.warning("quota snapshots not loaded yet for %s: %s", sorted(numbers), error)

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        for number in self._numbers(partitions):
            self._owned.discard(number)
            self._states.pop(number, None)

    async def handle(self, event: Event, record: Record) -> None:
        if not isinstance(event, UploadCompleted | QuotaLimitsSet):
            return  # the other upload events do not change quota
        partition = TopicPartition(record.topic, record.partition)
        async with self._lock(record.partition):
            users = self._states.get(record.partition)
            if users is None:
                await self._load({record.partition})
                users = self._states[record.partition]
            state = users.get(event.user_id)
            if self._ledger.applied_already(state, partition, record.offset):
                log.debug(
                    "skipping %s[%d]@%d: applied", record.topic, record.partition, record.offset
                )
                return
            applied = self._ledger.apply(state, event, partition, record.offset)
            if applied.changed:
                # Publish before remembering: if publishing fails, the retry applies it again.
                snapshot = self._ledger.snapshot(applied.state, updated_at=self._clock())
                await self._sink.emit(snapshot)
            users[event.user_id] = applied.state

    async def _load(self, numbers: set[int]) -> None:
        missing = {number for number in numbers if number not in self._states}
        if not missing:
            return
        loaded = await load_snapshots(
            self._open_reader, self._names.quota, missing, within=self._load_timeout
        )
        for number, snapshots in loaded.items():
            self._states[number] = {
                user_id: self._ledger.restore(snapshot) for user_id, snapshot in snapshots.items()
            }

    def _numbers(self, partitions: frozenset[TopicPartition]) -> set[int]:
        return {partition.partition for partition in partitions if partition.topic in self.topics}

    def _lock(self, number: int) -> asyncio.Lock:
        return self._locks.setdefault(number, asyncio.Lock())


def check_co_partitioned() -> None:
    """ValueError unless the user-keyed topics of the ledger share one partition count."""
    counts = {spec.suffix: spec.partitions for spec in TOPIC_SPECS if spec.suffix in _USER_KEYED}
    if len(set(counts.values())) != 1:
        raise ValueError(
            f"the quota ledger needs {', '.join(_USER_KEYED)} to have one partition count, "
            f"not {counts}: a user's inputs would have two writers"
        )


def quota_app(
    topics: Topics,
    sink: SnapshotSink,
    open_reader: ReaderFactory,
    *,
    bytes_limit: int,
    uploads_limit: int,
    period_days: int,
    load_timeout: float = 60.0,
) -> QuotaApp:
    """The quota consumer, as the command line runs it (`ingest consume quota`)."""
    check_co_partitioned()
    defaults = QuotaDefaults(
        bytes_limit=bytes_limit, uploads_limit=uploads_limit, period_days=period_days
    )
    return QuotaApp(topics, sink, open_reader, QuotaLedger(defaults), load_timeout=load_timeout)


if TYPE_CHECKING:

    def _implements(app: QuotaApp) -> ConsumerApp:
        return app
