"""A PATCH body as the tus writer reads it: closable from outside, held to the upload's limits,
digested, and ending instead of failing.

`Valve` lets another task end the body at once (the lease keeper when another
request asks for the upload, a shutdown), without cancelling anything but the
read it interrupts: the request then saves and commits what it already has.
`EndOnFailure` turns what cuts a body short (the client gone, a read timeout,
a size or quota limit passed) into a plain end of stream and keeps the error,
so everything that arrived before it can still be stored: a resumable upload
keeps the bytes a broken request delivered.

`PatchBody` is a PATCH's body made of these: its bytes counted from the
committed offset against the upload's length, the maximum size and the quota
left (TooLarge, 413, or QuotaExceeded, 429, on the chunk that passes one:
kept as the body's `error`, the body ending there), and fed to a digest when
the request sent Upload-Checksum.

`TusInterrupt` is how a shutdown reaches a running PATCH: through the valve,
so the request commits what it has instead of being cancelled.

None raises on its own; a cancellation that is not the valve's passes through.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ingest.errors import ClientDisconnected, IngestError, QuotaExceeded, TooLarge, UploadTimeout
from ingest.pipeline.body import MeteredBody, SizeLimits
from ingest.pipeline.stream import Interrupt
from ingest.usecases.tus.checksum import OrderedDigest, digesting

_CUT_SHORT = (ClientDisconnected, UploadTimeout, TooLarge, QuotaExceeded)


class Valve:
    """Chunks of a body until `close(reason)` is called; then the body ends at once."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self.reason: str | None = None
        self._reader: asyncio.Task[Any] | None = None
        self._interrupting = False

    def close(self, reason: str) -> None:
        if self.reason is not None:
            return
        self.reason = reason
        if self._reader is not None:
            # The reader waits for the client inside __anext__: wake it there.
            self._interrupting = True
            self._reader.cancel()

    def __aiter__(self) -> Valve:
        return self

    async def __anext__(self) -> bytes:
        if self.reason is not None:
            raise StopAsyncIteration
        task = asyncio.current_task()
        self._reader = task
        try:
            return await anext(self._chunks)
        except asyncio.CancelledError:
            if self._interrupting and task is not None and task.uncancel() == 0:
                raise StopAsyncIteration from None
            raise
        finally:
            self._reader = None
            self._interrupting = False


class EndOnFailure:
    """Chunks of a body; a body cut short simply ends, and `error` says why."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self.error: IngestError | None = None

    def __aiter__(self) -> EndOnFailure:
        return self

    async def __anext__(self) -> bytes:
        if self.error is not None:
            raise StopAsyncIteration
        try:
            return await anext(self._chunks)
        except _CUT_SHORT as error:
            self.error = error
            raise StopAsyncIteration from None


class PatchBody:
    """A PATCH's body starting at offset `committed`, as its bytes are stored (`arrived`)."""

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        committed: int,
        length: int | None,
        max_size: int,
        checksum_algorithm: str | None,
        on_chunk: Callable[[int], None],
    ) -> None:
        self._committed = committed
        self._length = length
        self._max_size = max_size
        self._counted = on_chunk
        self.quota_remaining: int | None = None
        """The most the upload may reach under the quota, once the request starts."""
        self.valve = Valve(chunks)
        # The limits are the upload's, counted from its committed offset: checked here.
        self._metered = MeteredBody(
            self.valve, SizeLimits(max_size=sys.maxsize), on_chunk=self._on_chunk
        )
        self.digest = OrderedDigest(checksum_algorithm) if checksum_algorithm is not None else None
        """The Upload-Checksum digest of what arrived, when the request sent one."""
        arrived: AsyncIterator[bytes] = self._metered
        if self.digest is not None:
            arrived = digesting(arrived, self.digest)
        self.arrived = EndOnFailure(arrived)

    async def close(self) -> None:
        if self.digest is not None:
            await self.digest.close()

    async def _on_chunk(self, size: int) -> None:
        total = self._committed + self._metered.received
        length = self._length
        if length is not None and total > length:
            raise TooLarge(
                f"the upload is {length} bytes long; this request goes past it",
                details={"upload_length": length, "offset": total},
            )
        if total > self._max_size:
            raise TooLarge(
                f"the upload passed the maximum size of {self._max_size} bytes",
                details={"max_size": self._max_size, "offset": total},
            )
        if self.quota_remaining is not None and total > self.quota_remaining:
            raise QuotaExceeded(
                f"the upload passed the {self.quota_remaining} bytes left in the quota",
                details={"quota_remaining": self.quota_remaining, "offset": total},
            )
        self._counted(size)


@dataclass
class TusInterrupt(Interrupt):
    """A shutdown closes the body, so the request commits what it has; a cancel stops it."""

    valve: Valve | None = field(default=None)
    completing: bool = False
    """Set once the file is being completed: a cancel arriving then loses to the completion."""

    def cancel(
        self,
        task: asyncio.Task[Any],
        reason: Literal["cancelled", "shutdown"],
        message: str | None = None,
    ) -> None:
        if self.completing:
            return
        if reason == "shutdown" and self.valve is not None:
            self.reason = reason
            self.valve.close("shutdown")
            return
        super().cancel(task, reason, message)
