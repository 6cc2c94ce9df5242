"""The bytes a benchmark sends: a video signature, then a fixed random block repeated.

Chunks are memoryview slices of one pre-generated block, so generating a body
costs the client no copy and no random numbers: the client shares the cores
with the server and MinIO, and every cycle it spends is one they do not get.
Random (incompressible) bytes keep any compression along the way honest.
Nothing here fails; sizes are plain byte counts.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Final

KiB: Final = 1024
MiB: Final = 1024 * KiB
GiB: Final = 1024 * MiB

MP4_HEAD: Final = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
_BLOCK_SIZE: Final = 4 * MiB
# Two copies back to back: any chunk of up to _BLOCK_SIZE bytes starting
# anywhere in the first copy is one contiguous slice.
_BLOCK: Final = random.Random(42).randbytes(_BLOCK_SIZE)
_FIRST: Final = memoryview(MP4_HEAD + _BLOCK[len(MP4_HEAD) :] + _BLOCK)
_REST: Final = memoryview(_BLOCK + _BLOCK)

OnSent = Callable[[int], None]
"""Told the running total of bytes handed to the transport, after each chunk."""


def chunk_at(offset: int, size: int) -> memoryview:
    """`size` bytes (at most 4 MiB) of the body at `offset`, without copying."""
    if size > _BLOCK_SIZE:
        raise ValueError("a chunk is at most 4 MiB")
    start = offset % _BLOCK_SIZE
    source = _FIRST if offset < _BLOCK_SIZE else _REST
    return source[start : start + size]


async def video_body(
    size: int, chunk: int = MiB, on_sent: OnSent | None = None
) -> AsyncIterator[memoryview]:
    """The whole body, in chunks of `chunk` bytes (the last may be shorter)."""
    sent = 0
    while sent < size:
        n = min(chunk, size - sent)
        yield chunk_at(sent, n)
        sent += n
        if on_sent is not None:
            on_sent(sent)


async def trickle_body(
    size: int, chunk: int, interval: float, on_sent: OnSent | None = None
) -> AsyncIterator[memoryview]:
    """A slow client: `chunk` bytes, then a pause of `interval` seconds, until `size` are sent."""
    sent = 0
    while sent < size:
        n = min(chunk, size - sent)
        yield chunk_at(sent, n)
        sent += n
        if on_sent is not None:
            on_sent(sent)
        if sent < size:
            await asyncio.sleep(interval)


def part_bytes(offset: int, size: int) -> bytes:
    """`size` bytes of the body at `offset` as one bytes object (what an S3 part body needs)."""
    pieces: list[memoryview] = []
    at = offset
    while at < offset + size:
        n = min(_BLOCK_SIZE, offset + size - at)
        pieces.append(chunk_at(at, n))
        at += n
    return b"".join(pieces)
