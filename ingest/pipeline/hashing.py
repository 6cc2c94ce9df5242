"""The SHA-256 of a whole upload and the CRC32C of each of its parts, in worker threads.

The whole-file SHA-256 is the file's identity (duplicates, a declared hash);
each part carries a CRC32C that S3 verifies (`infra.checksums`: a part's
checksum only has to catch bytes changed on the way, and CRC32C costs a
fortieth of a SHA-256). hashlib releases the GIL on large buffers, so hashing
a part in a thread lets the event loop keep reading the next part meanwhile.
The whole-file hash must see the parts in order, so each part's job waits for
the previous one: the jobs form a chain, and the loop never waits on it unless
it asks for a result (`StreamHasher`): each byte is read by one worker-thread
job, which feeds it to the whole-file hash and checksums its part. A request
that sees only part of a file either checksums each part on its own
(`PartChecksums`) or, when the hash of the bytes before it is at hand (a tus
PATCH on the instance that wrote the previous one), carries that hash on
(`StreamHasher(resume=..., skip=...)`).

A job fails only when cancelled or when an earlier job in the chain failed
(`HashChainBroken`), since the whole-file digest is then meaningless.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from infra.checksums import crc32c_b64

if TYPE_CHECKING:
    from _hashlib import HASH


class HashChainBroken(RuntimeError):
    """An earlier part was never hashed, so the whole-file digest is incomplete."""


def part_checksum(data: bytes) -> str:
    """The base64 CRC32C of a part, as S3's `ChecksumCRC32C` wants it."""
    return crc32c_b64(data)


def _hash_part(whole: HASH, data: bytes, start: int) -> str:
    # Runs in a worker thread; `whole` is only ever touched by one job at a time.
    whole.update(memoryview(data)[start:] if start else data)
    return part_checksum(data)


def _hash_rest(whole: HASH, data: bytes, start: int) -> str:
    whole.update(memoryview(data)[start:] if start else data)
    return ""


class PartChecksums:
    """Checksums parts one by one, each in a worker thread: for a request that sees only
    some of a file (a tus PATCH), where no whole-file hash can be kept."""

    def __init__(self) -> None:
        self._pending: set[asyncio.Task[str]] = set()

    def submit(self, data: bytes) -> asyncio.Task[str]:
        """Start checksumming the next part; the task's result is its `part_checksum`."""
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
    """Feeds parts to a whole-file SHA-256 in submission order and checksums each part.

    `resume` continues the hash of the bytes before the first part (a copy of
    it: the caller's object stays as it was), and the first `skip` bytes
    submitted are already in that hash (a tus tail read back ahead of the body),
    so they are checksummed with their part but not hashed again.
    """

    def __init__(self, *, resume: HASH | None = None, skip: int = 0) -> None:
        super().__init__()
        self._whole = resume.copy() if resume is not None else hashlib.sha256()
        self._skip = skip
        self._last: asyncio.Task[str] | None = None
        self._submitted = 0
        self._fed = 0

    @property
    def bytes_submitted(self) -> int:
        return self._submitted

    @property
    def fed(self) -> int:
        """Bytes given to the whole-file hash so far (those submitted, less the skipped)."""
        return self._fed

    def submit(self, data: bytes) -> asyncio.Task[str]:
        """Start hashing the next part; the task's result is its checksum (`part_checksum`)."""
        return self._chain(_hash_part, data)

    def feed(self, data: bytes) -> asyncio.Task[str]:
        """Add `data` to the whole-file hash only (bytes that are not a part)."""
        return self._chain(_hash_rest, data)

    async def hexdigest(self) -> str:
        """The whole-file SHA-256 (lowercase hex) of every part submitted so far."""
        return (await self.finish()).hexdigest()

    async def finish(self) -> HASH:
        """The whole-file hash object, once every job submitted so far has run."""
        if self._last is not None:
            await self._last
        return self._whole

    async def close(self) -> None:
        """Stop the jobs still running (the body was abandoned) and wait for them."""
        pending = self.cancel()
        if pending:
            await asyncio.wait(pending)

    def _chain(self, job: Callable[[HASH, bytes, int], str], data: bytes) -> asyncio.Task[str]:
        start = min(self._skip, len(data))
        self._skip -= start
        task = self._track(asyncio.create_task(self._digest(self._last, job, data, start)))
        self._last = task
        self._submitted += len(data)
        self._fed += len(data) - start
        return task

    async def _digest(
        self,
        previous: asyncio.Task[str] | None,
        job: Callable[[HASH, bytes, int], str],
        data: bytes,
        start: int,
    ) -> str:
        if previous is not None:
            # asyncio.wait, not await: cancelling this job must not cancel the previous one.
            await asyncio.wait({previous})
            if previous.cancelled() or previous.exception() is not None:
                raise HashChainBroken("an earlier part of the upload was not hashed")
        return await asyncio.to_thread(job, self._whole, data, start)
