"""Reading a local file as a stream of chunks, off the event loop, from any offset."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiofiles

CHUNK = 1024 * 1024


async def file_chunks(
    path: Path,
    *,
    start: int = 0,
    length: int | None = None,
    chunk: int = CHUNK,
    on_chunk: Callable[[int], None] | None = None,
) -> AsyncIterator[bytes]:
    """Chunks of `path` from `start`, `length` bytes at most; `on_chunk` sees each size sent."""
    remaining = length
    async with aiofiles.open(path, "rb") as source:
        await source.seek(start)
        while remaining is None or remaining > 0:
            want = chunk if remaining is None else min(chunk, remaining)
            data = await source.read(want)
            if not data:
                return
            if remaining is not None:
                remaining -= len(data)
            if on_chunk is not None:
                on_chunk(len(data))
            yield data
