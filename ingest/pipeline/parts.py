"""Cutting a stream of arbitrary chunks into the fixed-size parts of an S3 multipart upload.

`plan_part_size` picks the part size of one upload so that it fits S3's limits
(at most 10,000 parts, at most 5 GiB each). `PartReader` re-buffers: it keeps
the received chunks as they are and joins them once when a part is full, so
the memory it holds is the bytes received and a part costs a single copy (none
when a chunk is exactly a part). It raises whatever the chunk source raises.
"""

from __future__ import annotations

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

    Chunks must not be mutated once yielded: pieces of them are kept until
    their part is joined.
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
        await self._fill(size)
        head = bytearray()
        for piece in self._pieces:
            head += piece[: size - len(head)]
            if len(head) >= size:
                break
        return bytes(head)

    async def read_part(self, size: int) -> bytes:
        """The next `size` bytes; fewer only at the end of the stream (b"" once it is spent)."""
        if size <= 0:
            raise ValueError("a part has at least 1 byte")
        await self._fill(size)
        return self._take(size)

    async def _fill(self, size: int) -> None:
        while self._buffered < size and not self._exhausted:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self._exhausted = True
                return
            if chunk:
                self._pieces.append(chunk)
                self._buffered += len(chunk)

    def _take(self, size: int) -> bytes:
        taken: list[bytes | memoryview] = []
        if self._buffered <= size:
            taken.extend(self._pieces)
            self._pieces.clear()
            self._buffered = 0
        else:
            missing = size
            while missing:
                piece = self._pieces[0]
                if len(piece) <= missing:
                    taken.append(self._pieces.popleft())
                    missing -= len(piece)
                else:
                    # A view, not a slice: the chunk is copied once, into its part.
                    view = memoryview(piece)
                    taken.append(view[:missing])
                    self._pieces[0] = view[missing:]
                    missing = 0
            self._buffered -= size
        if len(taken) == 1 and isinstance(taken[0], bytes):
            return taken[0]
        return b"".join(taken)
