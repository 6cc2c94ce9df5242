"""Digests computed off the event loop: a PATCH body's Upload-Checksum, and a stored file's SHA-256.

`OrderedDigest` feeds a body's chunks, in order, to one hashlib object in a
worker thread, batched so that small chunks do not each cost a thread hop;
a bounded queue between the two slows the body down when hashing falls behind.
An `OrderedDigest` may continue a hash object of earlier requests (`resume`),
which is how the instance that wrote an upload's previous PATCH carries its
whole-file SHA-256 on (see `running`). `sha256_of_object` streams a stored
object back and hashes it chunk by chunk: the fallback when the running hash
is not on this instance.

How it fails: `OrderedDigest.digest` re-raises whatever stopped the worker;
`sha256_of_object` raises the store's errors. Neither ever holds a whole file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ingest.ports import ResumableObjectStore

if TYPE_CHECKING:
    from _hashlib import HASH

BATCH_BYTES = 1024 * 1024
QUEUED_BATCHES = 4


def _update(digest: HASH, batch: list[bytes]) -> None:
    # Runs in a worker thread; only the one worker ever touches `digest`.
    for chunk in batch:
        digest.update(chunk)


class OrderedDigest:
    """A hashlib digest of everything `feed` was given, computed in a worker thread."""

    def __init__(
        self, algorithm: str, *, batch_bytes: int = BATCH_BYTES, resume: HASH | None = None
    ) -> None:
        # A copy: the caller's object must stay what it was if this request is abandoned.
        self._digest = resume.copy() if resume is not None else hashlib.new(algorithm)
        self.fed = 0
        """Bytes given to `feed` so far."""
        self._batch_bytes = batch_bytes
        self._batch: list[bytes] = []
        self._batched = 0
        self._queue: asyncio.Queue[list[bytes] | None] = asyncio.Queue(QUEUED_BATCHES)
        self._worker: asyncio.Task[None] | None = None

    async def feed(self, chunk: bytes) -> None:
        self.fed += len(chunk)
        self._batch.append(chunk)
        self._batched += len(chunk)
        if self._batched >= self._batch_bytes:
            await self._flush()

    async def digest(self) -> bytes:
        """The digest of every chunk fed so far; feeding after this is an error."""
        return (await self.finish()).digest()

    async def finish(self) -> HASH:
        """The hash object of every chunk fed so far; feeding after this is an error."""
        await self._flush()
        worker = self._start()
        await self._queue.put(None)
        await worker
        return self._digest

    async def close(self) -> None:
        """Stop the worker without waiting for a digest (the body was abandoned)."""
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def _flush(self) -> None:
        if not self._batch:
            return
        worker = self._start()
        batch, self._batch, self._batched = self._batch, [], 0
        put = asyncio.ensure_future(self._queue.put(batch))
        # A worker that died would never make room in the queue: do not wait on it then.
        await asyncio.wait({put, worker}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
            await worker  # raises what stopped it

    def _start(self) -> asyncio.Task[None]:
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name="upload-checksum")
        return self._worker

    async def _work(self) -> None:
        while (batch := await self._queue.get()) is not None:
            await asyncio.to_thread(_update, self._digest, batch)


async def digesting(chunks: AsyncIterator[bytes], digest: OrderedDigest) -> AsyncIterator[bytes]:
    """The same chunks, each fed to `digest` before it is handed on."""
    async for chunk in chunks:
        await digest.feed(chunk)
        yield chunk


async def sha256_of_object(store: ResumableObjectStore, key: str) -> tuple[str, int]:
    """(hex SHA-256, size) of a stored object, hashing one chunk while reading the next."""
    digest = hashlib.sha256()
    size = 0
    hashing: asyncio.Future[None] | None = None
    try:
        async for chunk in store.read_object(key):
            if hashing is not None:
                await hashing
            size += len(chunk)
            hashing = asyncio.ensure_future(asyncio.to_thread(digest.update, chunk))
        if hashing is not None:
            await hashing
    finally:
        if hashing is not None and not hashing.done():
            hashing.cancel()
    return digest.hexdigest(), size
