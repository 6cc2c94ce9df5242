"""Reading a local file as a stream of chunks, off the event loop, from any offset, and its
SHA-256 the same way. Raises OSError when the file cannot be read."""

from __future__ import annotations

import asyncio
import hashlib
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


async def file_sha256(
    path: Path, *, chunk: int = CHUNK, on_chunk: Callable[[int], None] | None = None
) -> str:
    """The SHA-256 of `path`, streamed: reads and hashing both run off the event loop."""
    digest = hashlib.sha256()
    async for data in file_chunks(path, chunk=chunk, on_chunk=on_chunk):
        # hashlib releases the GIL on large buffers: a thread keeps the loop free meanwhile.
        await asyncio.to_thread(digest.update, data)
    return digest.hexdigest()
