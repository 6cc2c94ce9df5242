"""Cutting a stream of arbitrary chunks into the fixed-size parts of an S3 multipart upload.

`plan_part_size` picks the part size of one upload so that it fits S3's limits
(at most 10,000 parts, at most 5 GiB each). `PartReader` re-buffers: each
chunk is copied once, into the buffer of its part (none when a chunk is
exactly a part), so the memory it holds is the bytes received. It raises
whatever the chunk source raises, keeping what it had received.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import AsyncIterator
from typing import Final

MiB: Final = 1024 * 1024
MAX_PARTS: Final = 10_000
MAX_PART_SIZE: Final = 5 * 1024 * MiB


def plan_part_size(declared_size: int | None, base: int, max_size: int) -> int:
    """The part size for one upload: `base`, raised so the upload fits in MAX_PARTS parts.

    The declared size is what must fit; when the size is unknown, the largest
    upload allowed (`max_size`) must. A raised size is rounded up to whole MiB
    and never passes MAX_PART_SIZE.
    """
    if base <= 0:
        raise ValueError("the base part size must be positive")
    expected = declared_size if declared_size is not None else max_size
    needed = -(-max(expected, 0) // MAX_PARTS)
    size = base
    if needed > base:
        size = -(-needed // MiB) * MiB
    return min(size, MAX_PART_SIZE)


class PartReader:
    """Reads fixed-size parts out of an async iterator of chunks of any size.

    Each chunk is copied into its part's buffer as soon as it arrives, so the
    chunks themselves live only for an instant (the last one of a part until
    the next part takes its remainder) and the memory a part costs is its own
    buffer, allocated once at its final size: the pattern a memory budget can
    account for. Keeping the chunks until a part was full, then joining them,
    costs the same single copy but leaves the heap strewn with chunk-sized
    holes, between the parts of concurrent uploads, that no part fits into:
    with many uploads the process then holds twice its budget.

    Chunks must not be mutated once yielded: pieces of them are kept until
    they are copied into a part.
    """

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._pieces: deque[bytes | memoryview] = deque()
        self._buffered = 0
        self._exhausted = False

    @property
    def buffered(self) -> int:
        """Bytes received and not yet handed out."""
        return self._buffered

    @property
    def exhausted(self) -> bool:
        """The chunk source has ended (buffered bytes may remain)."""
        return self._exhausted

    @property
    def at_eof(self) -> bool:
        """Nothing more will come out of `read_part`."""
        return self._exhausted and self._buffered == 0

    async def peek(self, size: int) -> bytes:
        """The next `size` bytes (fewer when the stream ends sooner), left in place."""
        while self._buffered < size and await self._receive():
            pass
        head = bytearray()
        for piece in self._pieces:
            head += piece[: size - len(head)]
            if len(head) >= size:
                break
        return bytes(head)

    async def read_part(self, size: int, *, expected: int | None = None) -> bytes:
        """The next `size` bytes; fewer only at the end of the stream (b"" once it is spent).

        `expected` is how long the caller expects this part to be (a last part
        is shorter); the part's buffer is allocated at that size, and a wrong
        guess costs a reallocation, never a wrong part.
        """
        if size <= 0:
            raise ValueError("a part has at least 1 byte")
        if not self._pieces and not await self._receive():
            return b""
        first = self._pieces[0]
        if len(first) == size and isinstance(first, bytes):
            # A chunk that is exactly a part is handed on as it is: no copy.
            self._pieces.popleft()
            self._buffered -= size
            return first
        part = io.BytesIO(bytes(min(size, expected or size)))
        try:
            await self._fill(part, size)
        except BaseException:
            # What was taken stays received-and-not-handed-out, as if never taken.
            if part.tell():
                self._buffered += part.tell()
                self._pieces.appendleft(_value(part))
            raise
        return _value(part)

    async def _fill(self, part: io.BytesIO, size: int) -> None:
        missing = size
        while missing:
            if not self._pieces and not await self._receive():
                return
            piece = self._pieces.popleft()
            if len(piece) <= missing:
                part.write(piece)
                taken = len(piece)
            else:
                # A view, not a slice: the chunk is copied once, into its part.
                view = memoryview(piece)
                part.write(view[:missing])
                self._pieces.appendleft(view[missing:])
                taken = missing
            missing -= taken
            self._buffered -= taken

    async def _receive(self) -> bool:
        """Take one more (non-empty) chunk from the source; False once it has ended."""
        while not self._exhausted:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self._exhausted = True
                return False
            if chunk:
                self._pieces.append(chunk)
                self._buffered += len(chunk)
                return True
        return False


def _value(part: io.BytesIO) -> bytes:
    """The bytes written to `part` so far, without copying them.

    CPython's BytesIO keeps its contents in a bytes object and `getvalue()`
    returns that very object once it is trimmed to the written length, so
    the part is not copied a second time (were that ever to change, this
    would cost a copy, never a wrong result).
    """
    part.truncate(part.tell())
    return part.getvalue()
