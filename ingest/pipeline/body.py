"""The request body as the pipeline sees it: counted, held to the upload's limits, and
with transport failures turned into domain errors.

aiohttp's `client_max_size` does not cover streamed bodies, so the count kept
here is what enforces the maximum, the declared size and the quota, and it does
so on the chunk that passes a limit, before that chunk goes anywhere:
`TooLarge` (413) or `QuotaExceeded` (429). A body that raises becomes
`ClientDisconnected` (or `UploadTimeout` for a read timeout); an `IngestError`
raised by the body (a protocol layer refusing something) passes through
unchanged, and so does cancellation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from infra.describe import in_words
from ingest.errors import (
    ClientDisconnected,
    IncompleteBody,
    IngestError,
    QuotaExceeded,
    TooLarge,
    TooSmall,
    UploadTimeout,
)
from ingest.model import UploadTarget


@dataclass(frozen=True)
class SizeLimits:
    max_size: int
    min_size: int = 0
    declared_size: int | None = None
    quota_remaining: int | None = None

    @classmethod
    def of(cls, target: UploadTarget) -> SizeLimits:
        return cls(
            max_size=target.max_size,
            min_size=target.min_size,
            declared_size=target.declared_size,
            quota_remaining=target.quota_bytes_remaining,
        )

    def check_declared(self) -> None:
        """Refuse a declared size outside the limits, before any byte is read."""
        declared = self.declared_size
        if declared is None:
            return
        if declared > self.max_size:
            raise TooLarge(
                f"the declared size, {declared} bytes, is over the maximum of {self.max_size}",
                details={"declared_size": declared, "max_size": self.max_size},
            )
        if self.quota_remaining is not None and declared > self.quota_remaining:
            raise QuotaExceeded(
                f"the declared size, {declared} bytes, is over the {self.quota_remaining} bytes "
                "left in the quota",
                details={"declared_size": declared, "quota_remaining": self.quota_remaining},
            )
        if declared < self.min_size:
            raise TooSmall(
                f"the declared size, {declared} bytes, is under the minimum of {self.min_size}",
                details={"declared_size": declared, "min_size": self.min_size},
            )

    def check_received(self, received: int) -> None:
        """Raise as soon as `received` bytes pass a limit."""
        declared = self.declared_size
        if declared is not None and received > declared:
            raise TooLarge(
                f"the body is longer than the declared {declared} bytes",
                details={"declared_size": declared, "received": received},
            )
        if received > self.max_size:
            raise TooLarge(
                f"the body is over the maximum of {self.max_size} bytes",
                details={"max_size": self.max_size, "received": received},
            )
        if self.quota_remaining is not None and received > self.quota_remaining:
            raise QuotaExceeded(
                f"the body is over the {self.quota_remaining} bytes left in the quota",
                details={"quota_remaining": self.quota_remaining, "received": received},
            )

    def check_complete(self, received: int) -> None:
        """Raise unless a body that ended after `received` bytes is acceptable."""
        declared = self.declared_size
        if declared is not None and received < declared:
            raise IncompleteBody(
                f"the body ended after {received} of the declared {declared} bytes",
                details={"declared_size": declared, "received": received},
            )
        if received < self.min_size:
            raise TooSmall(
                f"the body, {received} bytes, is under the minimum of {self.min_size}",
                details={"min_size": self.min_size, "received": received},
            )


class MeteredBody:
    """An async iterator over a body's chunks that counts them and enforces `limits`.

    `on_chunk(size)` runs after each accepted chunk, before it is handed on; what
    it raises stops the body the same way.
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        limits: SizeLimits,
        on_chunk: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self._chunks = chunks
        self._limits = limits
        self._on_chunk = on_chunk
        self._received = 0
        self._ended = False

    @property
    def received(self) -> int:
        return self._received

    @property
    def ended(self) -> bool:
        """The body ended normally."""
        return self._ended

    def __aiter__(self) -> MeteredBody:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            self._ended = True
            raise
        except IngestError:
            raise
        except TimeoutError as exc:
            raise UploadTimeout("the client stopped sending the body") from exc
        except Exception as exc:
            # Whatever the transport raises (reset, EOF, a payload error), the
            # client is gone as far as this upload is concerned.
            raise ClientDisconnected(f"the client connection failed: {in_words(exc)}") from exc
        self._received += len(chunk)
        self._limits.check_received(self._received)
        if self._on_chunk is not None:
            await self._on_chunk(len(chunk))
        return chunk
