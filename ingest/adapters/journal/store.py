"""The journal from the event loop: appends committed in groups, bounds, reads for the relay.

Every file operation runs in one worker thread of the journal's own
(`SegmentLog` is not thread-safe, and one thread also keeps appends in the
order they were made), so the event loop never waits on the disk. `append`
returns once its record is fsynced; appends made while a write is under way
are written and fsynced together by the next one (group commit), so many
concurrent writers share each fsync.

Bounds: `max_bytes` of segments on disk and `max_age` of the oldest record
not yet sent. Past either, `has_room` is false (new uploads are refused);
records keep being accepted up to `max_bytes` itself, so uploads already
running can still end. Nothing is ever dropped.

How it fails: `append` raises JournalFull when a record would pass
`max_bytes`, and EventDeliveryError when the disk refuses the write; `open`
raises ServiceUnavailable when another live process holds the directory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from infra.errors import EventDeliveryError, JournalFull, ServiceUnavailable
from ingest.adapters.journal.segments import (
    HEADER_BYTES,
    JournalLocked,
    Position,
    Record,
    SegmentLog,
)

T = TypeVar("T")

ADMISSION_SHARE: Final = 0.9
"""New uploads are refused once the journal holds this share of `max_bytes`: the rest is kept
for the events of uploads already running."""


@dataclass(frozen=True)
class JournalLimits:
    max_bytes: int
    max_age: float
    segment_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_bytes < 64 * 1024:
            raise ValueError("a journal needs at least 64 KiB")
        if self.max_age <= 0:
            raise ValueError("the journal's maximum age must be positive")


@dataclass(frozen=True)
class Batch:
    records: list[Record]
    end: Position


class Journal:
    def __init__(
        self, directory: Path, limits: JournalLimits, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.directory = directory
        self.limits = limits
        self._clock = clock
        self._log = SegmentLog(
            directory, segment_bytes=min(limits.segment_bytes, max(limits.max_bytes // 8, 4096))
        )
        self._thread: ThreadPoolExecutor | None = None
        self._waiting: list[tuple[bytes, asyncio.Future[None]]] = []
        self._waiting_bytes = 0
        self._unwritten = 0
        """Records handed to `append` and not yet on disk (waiting or being written)."""
        self._writing: asyncio.Task[None] | None = None
        self.commits = 0
        """fsyncs made by appends (fewer than the records appended, under concurrency)."""

    async def open(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        try:
            await self._run(self._log.open)
        except JournalLocked as error:
            self._shut_thread()
            raise ServiceUnavailable(str(error), retriable=False) from error

    async def close(self) -> None:
        if self._writing is not None:
            await asyncio.shield(self._writing)
        if self._thread is not None:
            await self._run(self._log.close)
            self._shut_thread()

    def _shut_thread(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.shutdown(wait=False)

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        assert self._thread is not None, "the journal is not open"
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    # What it holds.

    @property
    def pending(self) -> int:
        """Records accepted and not yet acknowledged, those waiting for their fsync included."""
        return self._log.pending + self._unwritten

    @property
    def size(self) -> int:
        return self._log.size + self._waiting_bytes

    def oldest_age(self) -> float | None:
        """Seconds since the oldest record not yet sent was written."""
        oldest = self._log.oldest_at
        return None if oldest is None else max(0.0, self._clock() - oldest)

    def has_room(self) -> bool:
        """Whether the events of one more upload may be taken on."""
        if self.size >= self.limits.max_bytes * ADMISSION_SHARE:
            return False
        age = self.oldest_age()
        return age is None or age < self.limits.max_age

    # Appending, with group commit.

    async def append(self, payload: bytes) -> None:
        """Return once the record is on disk (fsynced)."""
        needed = len(payload) + HEADER_BYTES
        if self.size + needed > self.limits.max_bytes:
            raise JournalFull(
                f"the event journal holds {self.size} bytes of {self.limits.max_bytes}",
                details={"journal_bytes": self.size, "max_bytes": self.limits.max_bytes},
            )
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((payload, done))
        self._waiting_bytes += needed
        self._unwritten += 1
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write_waiting(), name="journal-commit")
        # Shielded: once handed over, the record is written whether or not its writer waits.
        await asyncio.shield(done)

    async def _write_waiting(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            payloads = [payload for payload, _ in group]
            written_at = self._clock()
            try:
                await self._run(self._log.append, payloads, written_at)
            except Exception as error:
                failure = EventDeliveryError(
                    f"the event journal could not write to {self.directory}: {error}",
                    retriable=True,
                )
                for _, done in group:
                    if not done.done():
                        done.set_exception(failure)
            else:
                self.commits += 1
                for _, done in group:
                    if not done.done():
                        done.set_result(None)
            finally:
                self._waiting_bytes -= sum(len(p) + HEADER_BYTES for p in payloads)
                self._unwritten -= len(payloads)

    # Reading and acknowledging, for the relay.

    async def read(self, max_records: int = 256, max_bytes: int = 4 * 1024 * 1024) -> Batch:
        records, end = await self._run(self._log.read, max_records, max_bytes)
        return Batch(records, end)

    async def acknowledge(self, batch: Batch) -> None:
        await self._run(self._log.acknowledge, batch.end)
