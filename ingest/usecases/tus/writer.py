"""One PATCH's bytes into the fixed-size parts of the upload's multipart upload, at their offsets.

A tus upload's parts keep one size P for the upload's life, whatever chunk
sizes its requests carry: part n always holds bytes [(n-1)P, nP) of the file,
so part numbers follow offsets and any instance can carry on where another
stopped. A PATCH starting at committed offset O reads the tail (bytes
[floor(O/P)P, O), kept as a small object) ahead of its body; each full part goes
to the multipart upload while the next is read (its bytes taken from the memory
budget before they are read, several parts in flight); what is left when the
body ends is the file's last part, when the upload length is reached, or else
the new tail, stored under a key naming its end offset.

How it fails: a part that cannot be stored stops the reading; the writer lets
the parts in flight finish and reports how far the parts are stored without a
gap (`Written.stored_through`) rather than raising, so the caller can commit
that prefix. A tail that cannot be stored is reported the same way. On
cancellation the parts in flight are stopped and the budget given back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ingest.pipeline.budget import MemoryBudget, Reservation
from ingest.pipeline.hashing import part_checksum
from ingest.pipeline.parts import PartReader
from ingest.ports import MultipartUpload, ResumableObjectStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    """Where one PATCH writes: the part size, the committed offset, and the upload length."""

    part_size: int
    committed: int
    length: int | None

    @property
    def base(self) -> int:
        """Offset of the first byte of the part this PATCH starts in (the tail's start)."""
        return self.committed - self.committed % self.part_size

    @property
    def first_part(self) -> int:
        return self.base // self.part_size + 1


@dataclass(frozen=True)
class Written:
    stored_through: int
    """End offset of the parts stored without a gap from the layout's base."""
    tail: bytes
    """Bytes after the last full part, stored as the new tail (b"" when none)."""
    tail_key: str | None
    failure: BaseException | None
    """Why writing stopped early: a part or the tail could not be stored."""

    @property
    def end(self) -> int:
        """The offset everything up to which is stored: what the PATCH may commit."""
        return self.stored_through + len(self.tail)


class PartWriter:
    def __init__(
        self,
        layout: Layout,
        *,
        store: ResumableObjectStore,
        tail_key: Callable[[int], str],
        budget: MemoryBudget,
        parts_in_flight: int,
        open_multipart: Callable[[], Awaitable[MultipartUpload]],
        on_stored: Callable[[int], Awaitable[None]],
    ) -> None:
        self._layout = layout
        self._store = store
        self._tail_key = tail_key
        self._budget = budget
        self._parts_in_flight = parts_in_flight
        self._open_multipart = open_multipart
        self._on_stored = on_stored
        self._multipart: MultipartUpload | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._reservations: set[Reservation] = set()
        self._stored: set[int] = set()
        self._failure: BaseException | None = None
        self._remainder = b""

    async def write(self, reader: PartReader) -> Written:
        """Store what `reader` yields (the tail first, then the body) and say how far it got."""
        try:
            try:
                await self._read_parts(reader)
            except Exception as error:  # the multipart upload could not be opened, ...
                self._failure = self._failure or error
            await self._settle()
            return await self._finish()
        except asyncio.CancelledError:
            await self._stop()
            raise
        finally:
            for reservation in list(self._reservations):
                self._give_back(reservation)

    async def _read_parts(self, reader: PartReader) -> None:
        size = self._layout.part_size
        number = self._layout.first_part
        while self._failure is None:
            await self._wait_for_slot()
            if self._failure is not None:
                return
            # Taken before reading on: with the budget spent, the client waits.
            reservation = await self._budget.reserve(size)
            self._reservations.add(reservation)
            data = await reader.read_part(size)
            if len(data) == size or (data and self._is_last_part(number, data)):
                reservation.shrink(len(data))
                await self._launch(number, data, reservation)
                number += 1
                continue
            # Held until the tail is stored: it is part of this upload's memory.
            reservation.shrink(len(data))
            self._remainder = data
            return

    def _is_last_part(self, number: int, data: bytes) -> bool:
        length = self._layout.length
        return length is not None and (number - 1) * self._layout.part_size + len(data) == length

    async def _launch(self, number: int, data: bytes, reservation: Reservation) -> None:
        if self._multipart is None:
            self._multipart = await self._open_multipart()
        task = asyncio.create_task(
            self._store_part(self._multipart, number, data, reservation), name=f"tus part {number}"
        )
        self._in_flight.add(task)
        task.add_done_callback(self._part_done)

    async def _store_part(
        self, multipart: MultipartUpload, number: int, data: bytes, reservation: Reservation
    ) -> None:
        try:
            checksum = await asyncio.to_thread(part_checksum, data)
            await multipart.upload_part(number, data, checksum)
        finally:
            del data
            self._give_back(reservation)
        self._stored.add(number)
        await self._on_stored(self._stored_through())

    def _part_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()

    async def _wait_for_slot(self) -> None:
        while len(self._in_flight) >= self._parts_in_flight and self._failure is None:
            await asyncio.wait(set(self._in_flight), return_when=asyncio.FIRST_COMPLETED)

    async def _settle(self) -> None:
        # Parts still in flight after a failure may succeed and lengthen the stored prefix.
        while self._in_flight:
            await asyncio.wait(set(self._in_flight))

    async def _finish(self) -> Written:
        stored_through = self._stored_through()
        tail = self._remainder if self._failure is None else b""
        end = stored_through + len(tail)
        if not tail or end == self._layout.committed:
            # Nothing new past the last part, or exactly the committed tail again.
            return Written(stored_through, tail, None, self._failure)
        key = self._tail_key(end)
        try:
            await self._store.put_small(key, tail)
        except Exception as error:
            log.warning("could not store the tail %s: %s", key, error)
            return Written(stored_through, b"", None, error)
        return Written(stored_through, tail, key, None)

    def _stored_through(self) -> int:
        layout = self._layout
        number = layout.first_part
        while number in self._stored:
            number += 1
        through = (number - 1) * layout.part_size
        if layout.length is not None:
            through = min(through, layout.length)
        return max(through, layout.base)

    async def _stop(self) -> None:
        for task in self._in_flight:
            task.cancel()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))

    def _give_back(self, reservation: Reservation) -> None:
        reservation.release()
        self._reservations.discard(reservation)
