"""One task per assigned partition: up to `max_in_flight` of its records handled at once.

The runtime hands the worker each batch the group consumer returned for its
partition (`submit`, in offset order); the worker starts records in order as
slots free up, notes each finished offset in its `OffsetTracker`, and tells
the runtime when it has room again (`on_room`, so a paused partition is
resumed). While one of its records waits to be retried, it starts no new
ones: later records wait behind it, and the commit never passes it.

`drain` (revocation, shutdown) stops starting records, gives those in flight
up to `grace` seconds, then cancels what is left; unfinished records are not
committed and are delivered again to the partition's next reader.

How it fails: the worker's task fails only on a bug or when a dead letter
cannot be written (DeadLetterFailed): its records in flight are cancelled
and the failure is raised from `drain` and seen by the runtime through the
task (`task`), which it watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence

from consumers.runtime.handling import RecordHandling
from consumers.runtime.offsets import OffsetTracker
from infra.feeds import Record, TopicPartition

log = logging.getLogger(__name__)


class PartitionWorker:
    def __init__(
        self,
        partition: TopicPartition,
        handling: RecordHandling,
        *,
        max_in_flight: int,
        committed: int | None = None,
        on_room: Callable[[TopicPartition], None] = lambda partition: None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.partition = partition
        self.offsets = OffsetTracker(committed)
        self._handling = handling
        self._max_in_flight = max_in_flight
        self._on_room = on_room
        self._waiting: deque[Record] = deque()
        self._in_flight = 0
        self._retrying = 0
        self._draining = False
        # Set whenever the loop may have something new to do: a record, a free slot, a drain.
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.task = asyncio.create_task(
            self._run(), name=f"partition {partition.topic}[{partition.partition}]"
        )

    @property
    def full(self) -> bool:
        """True when it holds enough records: fetch no more of this partition for now."""
        # One window in flight and one waiting, so a freed slot never waits for a fetch.
        return len(self._waiting) + self._in_flight >= 2 * self._max_in_flight

    def submit(self, records: Sequence[Record]) -> None:
        if self._draining:
            # Revoked or stopping: not handled, not tracked, so never committed; read again later.
            return
        for record in records:
            self.offsets.returned(record.offset)
            self._waiting.append(record)
        if records:
            self._idle.clear()
            self._wake.set()

    async def drain(self, grace: float) -> None:
        """Start nothing more; let what is in flight finish within `grace`, cancel the rest."""
        self._draining = True
        self._waiting.clear()
        self._wake.set()
        try:
            async with asyncio.timeout(grace):
                await asyncio.shield(self.task)
        except TimeoutError:
            log.warning(
                "%s[%d]: %d records still in flight after %g s; cancelling them (they are "
                "delivered again)",
                self.partition.topic,
                self.partition.partition,
                self._in_flight,
                grace,
            )
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as running:
            while True:
                while self._can_start():
                    record = self._waiting.popleft()
                    self._in_flight += 1
                    running.create_task(self._one(record), name=f"record {record.offset}")
                if self._draining and self._in_flight == 0:
                    return
                if not self._waiting and self._in_flight == 0:
                    self._idle.set()
                self._wake.clear()
                await self._wake.wait()

    def _can_start(self) -> bool:
        return (
            bool(self._waiting)
            and not self._draining
            and self._retrying == 0
            and self._in_flight < self._max_in_flight
        )

    async def _one(self, record: Record) -> None:
        try:
            await self._handling.process(record, self._retry_hook)
            self.offsets.finished(record.offset)
        finally:
            self._in_flight -= 1
            self._wake.set()
        if not self.full:
            self._on_room(self.partition)

    def _retry_hook(self, waiting: bool) -> None:
        self._retrying += 1 if waiting else -1
        self._wake.set()

    async def idle(self) -> None:
        """Until nothing is waiting or in flight (for tests and the in-process runner)."""
        await self._idle.wait()
