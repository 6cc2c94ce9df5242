"""SHA-256 of a whole upload and of each of its parts, computed in worker threads.

hashlib releases the GIL on large buffers, so hashing a part in a thread lets
the event loop keep reading the next part meanwhile. The whole-file hash must
see the parts in order, so each part's job waits for the previous one: the jobs
form a chain, and the loop never waits on it unless it asks for a result
(`StreamHasher`). A request that sees only part of a file checksums each part
on its own (`PartChecksums`).

A job fails only when cancelled or when an earlier job in the chain failed
(`HashChainBroken`), since the whole-file digest is then meaningless.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _hashlib import HASH


class HashChainBroken(RuntimeError):
    """An earlier part was never hashed, so the whole-file digest is incomplete."""


def part_checksum(data: bytes) -> str:
    """The base64 SHA-256 of `data`, as S3's `ChecksumSHA256` wants it."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _hash_part(whole: HASH, data: bytes) -> str:
    # Runs in a worker thread; `whole` is only ever touched by one job at a time.
    whole.update(data)
    return part_checksum(data)


class PartChecksums:
    """Checksums parts one by one, each in a worker thread: for a request that sees only
    some of a file (a tus PATCH), where no whole-file hash can be kept."""

    def __init__(self) -> None:
        self._pending: set[asyncio.Task[str]] = set()

    def submit(self, data: bytes) -> asyncio.Task[str]:
        """Start checksumming the next part; the task's result is its base64 SHA-256."""
        return self._track(asyncio.create_task(asyncio.to_thread(part_checksum, data)))

    def cancel(self) -> list[asyncio.Task[str]]:
        """Cancel the jobs still running; returns them so the caller can wait for them."""
        pending = list(self._pending)
        for task in pending:
            task.cancel()
        return pending

    def _track(self, task: asyncio.Task[str]) -> asyncio.Task[str]:
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task


class StreamHasher(PartChecksums):
    """Feeds parts to a whole-file SHA-256 in submission order and checksums each part."""

    def __init__(self) -> None:
        super().__init__()
        self._whole = hashlib.sha256()
        self._last: asyncio.Task[str] | None = None
        self._submitted = 0

    @property
    def bytes_submitted(self) -> int:
        return self._submitted

    def submit(self, data: bytes) -> asyncio.Task[str]:
        """Start hashing the next part; the task's result is its base64 SHA-256."""
        task = self._track(asyncio.create_task(self._digest(self._last, data)))
        self._last = task
        self._submitted += len(data)
        return task

    async def hexdigest(self) -> str:
        """The whole-file SHA-256 (lowercase hex) of every part submitted so far."""
        if self._last is not None:
            await self._last
        return self._whole.hexdigest()

    async def _digest(self, previous: asyncio.Task[str] | None, data: bytes) -> str:
        if previous is not None:
            # asyncio.wait, not await: cancelling this job must not cancel the previous one.
            await asyncio.wait({previous})
            if previous.cancelled() or previous.exception() is not None:
                raise HashChainBroken("an earlier part of the upload was not hashed")
        return await asyncio.to_thread(_hash_part, self._whole, data)
