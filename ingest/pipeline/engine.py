"""The part engine: a body's fixed-size parts into a multipart upload, several at once.

Every way in stores its parts here: the one-shot upload (`stream`) and a tus
PATCH (`ingest.usecases.tus.writer`). A part is read only once a slot is free
and its bytes are taken from the process-wide memory budget, so a slow store
slows the client (through TCP), never the heap; each part goes to a task of
its own that checksums it off the event loop (for S3's `ChecksumCRC32C`) and
uploads it, while the next part is read. `store_full_parts` hands back the
short piece a body ends with, still reserved, for the caller to place: the
last part of a file, or a tus tail.

How it fails: the first part that fails wins. The reading stops before the
next part (and at the next chunk, for a caller that calls `check` on every
chunk), and `check` and `drain` raise that very error. The engine cleans up
nothing by itself: the caller either waits for the parts in flight (`drain`,
`settle`) or stops them (`cancel`), and gives the budget back (`release_all`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ingest.pipeline.budget import MemoryBudget, Reservation
from ingest.pipeline.parts import PartReader
from ingest.ports import MultipartUpload, StoredPart


class PartHasher(Protocol):
    """Checksums parts off the event loop, in the order they are submitted."""

    def submit(self, data: bytes) -> asyncio.Task[str]:
        """The part's checksum for the store to verify (`part_checksum`), as a task."""
        ...

    def cancel(self) -> list[asyncio.Task[str]]:
        """Cancel the jobs still running; returns them to be waited for."""
        ...


class Piece:
    """The bytes read for one part, and the share of the budget they hold until stored."""

    __slots__ = ("_data", "reservation")

    def __init__(self, data: bytes, reservation: Reservation) -> None:
        self._data = data
        self.reservation = reservation

    @property
    def data(self) -> bytes:
        return self._data

    def __len__(self) -> int:
        return len(self._data)

    def take(self) -> bytes:
        """The bytes, handed on: the piece no longer holds them, so they die with their taker."""
        data, self._data = self._data, b""
        return data


class PartEngine:
    def __init__(
        self,
        *,
        part_size: int,
        budget: MemoryBudget,
        parts_in_flight: int,
        hasher: PartHasher,
        open_multipart: Callable[[], Awaitable[MultipartUpload]],
        on_stored: Callable[[StoredPart], Awaitable[None]],
        name: str,
        first_part: int = 1,
        expected_bytes: int | None = None,
    ) -> None:
        """`expected_bytes` is the most the reader will yield, when known: the last part's
        share of the budget is then only what it can hold."""
        self._part_size = part_size
        self._budget = budget
        self._parts_in_flight = parts_in_flight
        self._hasher = hasher
        self._open_multipart = open_multipart
        self._on_stored = on_stored
        self._name = name
        self._expected = expected_bytes
        self._next_number = first_part
        self._read = 0
        self.multipart: MultipartUpload | None = None
        self.stored: list[StoredPart] = []
        self.failure: BaseException | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        # Parts whose bytes are being hashed or sent; a part task outlives that
        # while it reports the part stored.
        self._sending = 0
        self._slot_freed = asyncio.Event()
        self._reservations: set[Reservation] = set()
        self._sizes: dict[int, int] = {}
        self._gapless_end = first_part
        self._gapless_bytes = 0

    @property
    def bytes_read(self) -> int:
        return self._read

    @property
    def gapless_bytes(self) -> int:
        """Bytes of the parts stored without a gap from the first part."""
        return self._gapless_bytes

    async def store_full_parts(
        self, reader: PartReader, first: Piece | None = None
    ) -> Piece | None:
        """Store every full part `reader` yields (after `first`, read earlier); returns the
        short piece the body ended with, still reserved, or None when it ended on a boundary."""
        piece = first if first is not None else await self.read_piece(reader)
        while len(piece) == self._part_size:
            await self.launch(piece)
            if reader.at_eof:
                return None
            piece = await self.read_piece(reader)
        if not piece:
            self.give_back(piece.reservation)
            return None
        return piece

    async def read_piece(self, reader: PartReader) -> Piece:
        """The next part's bytes (fewer at the end), once a slot and their memory are free."""
        await self._wait_for_slot()
        wanted = self._part_size
        if self._expected is not None:
            wanted = max(0, min(wanted, self._expected - self._read))
        # Reserved before reading on: when the budget is spent the body is not
        # read, and the client is slowed down by TCP.
        reservation = await self._budget.reserve(wanted)
        self._reservations.add(reservation)
        data = await reader.read_part(self._part_size, expected=reservation.size or None)
        reservation.shrink(len(data))
        self._read += len(data)
        return Piece(data, reservation)

    async def launch(self, piece: Piece) -> None:
        """Store `piece` as the next part, in a task of its own (the upload is opened first)."""
        if self.multipart is None:
            self.multipart = await self._open_multipart()
        number = self._next_number
        self._next_number += 1
        data = piece.take()
        task = asyncio.create_task(
            self._store(self.multipart, number, data, self._hasher.submit(data), piece.reservation),
            name=f"{self._name} part {number}",
        )
        self._in_flight.add(task)
        self._sending += 1
        task.add_done_callback(self._part_done)

    def check(self) -> None:
        """Raise the error of the first part that failed, if one did."""
        if self.failure is not None:
            raise self.failure

    def fail(self, error: BaseException) -> None:
        """Record `error` as what stopped the parts, unless a part failed earlier."""
        self.failure = self.failure or error

    async def drain(self) -> None:
        """Wait for the parts in flight; raise as soon as one fails."""
        while self._in_flight:
            await asyncio.wait(set(self._in_flight), return_when=asyncio.FIRST_EXCEPTION)
            self.check()
        self.check()

    async def settle(self) -> None:
        """Wait for every part in flight to end, whatever becomes of it; never raises."""
        while self._in_flight:
            await asyncio.wait(set(self._in_flight))

    def cancel(self) -> list[asyncio.Task[Any]]:
        """Stop the parts in flight and their checksums; returns the tasks to wait for."""
        stopping: list[asyncio.Task[Any]] = [*self._in_flight, *self._hasher.cancel()]
        for task in stopping:
            task.cancel()
        return stopping

    def give_back(self, reservation: Reservation) -> None:
        reservation.release()
        self._reservations.discard(reservation)

    def release_all(self) -> None:
        """Give back every byte still held (after the parts ended or were stopped)."""
        for reservation in list(self._reservations):
            self.give_back(reservation)

    async def _store(
        self,
        multipart: MultipartUpload,
        number: int,
        data: bytes,
        checksum: asyncio.Task[str],
        reservation: Reservation,
    ) -> None:
        size = len(data)
        try:
            part = await multipart.upload_part(number, data, await checksum)
        except Exception as error:
            # Seen by the reader before it takes on another part, not after.
            self.fail(error)
            raise
        finally:
            del data
            self.give_back(reservation)
            self._sending -= 1
            self._slot_freed.set()
        self.stored.append(part)
        self._sizes[number] = size
        while self._gapless_end in self._sizes:
            self._gapless_bytes += self._sizes[self._gapless_end]
            self._gapless_end += 1
        # Reported after the part's slot is free: waiting for the report (Kafka's
        # acknowledgement) must not keep the next part from being sent.
        await self._on_stored(part)

    def _part_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slot_freed.set()
        if not task.cancelled() and (error := task.exception()) is not None:
            self.fail(error)

    async def _wait_for_slot(self) -> None:
        self.check()
        limit = self._parts_in_flight
        # Parts still reporting count too, up to as many again: when the
        # reports are slow the upload slows down, instead of queueing them.
        while self._sending >= limit or len(self._in_flight) >= 2 * limit:
            self._slot_freed.clear()
            await self._slot_freed.wait()
            self.check()
