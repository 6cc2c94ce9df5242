"""One PATCH's bytes into the fixed-size parts of the upload's multipart upload, at their offsets.

A tus upload's parts keep one size P for the upload's life, whatever chunk
sizes its requests carry: part n always holds bytes [(n-1)P, nP) of the file,
so part numbers follow offsets and any instance can carry on where another
stopped. A PATCH starting at committed offset O reads the tail (bytes
[floor(O/P)P, O), kept as a small object) ahead of its body; the pipeline's
part engine stores each full part while the next is read (its bytes taken from
the memory budget before they are read, several parts in flight, each one
checksummed, and fed to the file's running hash when there is one, by a single
worker-thread job), numbered from the part the PATCH starts in; what is left
when the body ends is the file's last part, when the upload length is
reached, or else the new tail, stored as one segment under a key naming its
start and end (see `tail`).

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

from ingest.pipeline.budget import MemoryBudget
from ingest.pipeline.engine import PartEngine, PartHasher
from ingest.pipeline.hashing import PartChecksums
from ingest.pipeline.parts import PartReader
from ingest.ports import MultipartUpload, ResumableObjectStore, StoredPart

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
        tail_key: Callable[[int, int], str],
        budget: MemoryBudget,
        parts_in_flight: int,
        open_multipart: Callable[[], Awaitable[MultipartUpload]],
        on_stored: Callable[[int], Awaitable[None]],
        hasher: PartHasher | None = None,
    ) -> None:
        """`hasher` checksums the parts (and may carry the file's hash on, see
        `StreamHasher`); by default each part is only checksummed."""
        self._layout = layout
        self._store = store
        self._tail_key = tail_key
        self._on_stored = on_stored
        length = layout.length
        self._engine = PartEngine(
            part_size=layout.part_size,
            budget=budget,
            parts_in_flight=parts_in_flight,
            hasher=hasher if hasher is not None else PartChecksums(),
            open_multipart=open_multipart,
            on_stored=self._part_stored,
            name="tus",
            first_part=layout.first_part,
            expected_bytes=None if length is None else length - layout.base,
        )

    async def write(self, reader: PartReader) -> Written:
        """Store what `reader` yields (the tail first, then the body) and say how far it got."""
        engine = self._engine
        remainder = b""
        try:
            try:
                last = await engine.store_full_parts(reader)
                if last is not None and self._ends_file():
                    await engine.launch(last)
                elif last is not None:
                    # Still reserved until the tail is stored: it is part of this upload's memory.
                    remainder = last.data
            except Exception as error:  # a part failed, the multipart upload could not open, ...
                engine.fail(error)
            # Parts still in flight after a failure may succeed and lengthen the stored prefix.
            await engine.settle()
            return await self._finish(remainder if engine.failure is None else b"")
        except asyncio.CancelledError:
            stopping = engine.cancel()
            if stopping:
                await asyncio.wait(stopping)
            raise
        finally:
            engine.release_all()

    def _ends_file(self) -> bool:
        """Whether the bytes read so far reach the upload's length."""
        layout = self._layout
        return layout.length is not None and layout.base + self._engine.bytes_read == layout.length

    async def _part_stored(self, part: StoredPart) -> None:
        await self._on_stored(self._stored_through())

    async def _finish(self, tail: bytes) -> Written:
        stored_through = self._stored_through()
        failure = self._engine.failure
        end = stored_through + len(tail)
        if not tail or end == self._layout.committed:
            # Nothing new past the last part, or exactly the committed tail again.
            return Written(stored_through, tail, None, failure)
        key = self._tail_key(stored_through, end)
        try:
            await self._store.put_small(key, tail)
        except Exception as error:
            log.warning("could not store the tail %s: %s", key, error)
            return Written(stored_through, b"", None, error)
        return Written(stored_through, tail, key, None)

    def _stored_through(self) -> int:
        return self._layout.base + self._engine.gapless_bytes
