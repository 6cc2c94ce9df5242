"""A PATCH body as the tus writer reads it: closable from outside, and ending instead of failing.

`Valve` lets another task end the body at once (the lease keeper when another
request asks for the upload, a shutdown), without cancelling anything but the
read it interrupts: the request then saves and commits what it already has.
`EndOnFailure` turns what cuts a body short (the client gone, a read timeout,
a size or quota limit passed) into a plain end of stream and keeps the error,
so everything that arrived before it can still be stored: a resumable upload
keeps the bytes a broken request delivered.

`TusInterrupt` is how a shutdown reaches a running PATCH: through the valve,
so the request commits what it has instead of being cancelled.

Neither raises on its own; a cancellation that is not the valve's passes through.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from ingest.errors import ClientDisconnected, IngestError, QuotaExceeded, TooLarge, UploadTimeout
from ingest.pipeline.stream import Interrupt

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
