"""The whole-file SHA-256 of tus uploads, carried from one PATCH to the next on this instance.

hashlib cannot save its state anywhere but in memory, so the instance that
committed an upload's offset keeps the hash object of every byte before that
offset. The next PATCH landing here at that offset continues it; when the last
byte is committed, the file's SHA-256 is known without reading the object back
from S3. A PATCH on another instance (a load balancer's choice, a takeover
after a crash) finds nothing here and the upload falls back to one read-back
when it completes; what it commits it then carries on itself.

A kept hash is valid for exactly one offset: the bytes before a committed
offset never change, so (upload id, offset) names one prefix of the file.

Bounded: at most `max_uploads` hash objects (about 200 bytes each) are kept,
the least recently used dropped first; dropping one only costs a read-back.

`CarriedHash` is one PATCH's share: the kept hash continued as the body's bytes
pass (by the part engine's one job per part, or as the body arrives when it
only adds to the tail), then kept at the offset the PATCH commits. It never
raises on its own; a PATCH whose hash does not cover exactly what it commits
makes the upload fall back to the read-back.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol

from ingest.pipeline.hashing import StreamHasher
from ingest.usecases.tus.checksum import OrderedDigest, digesting

if TYPE_CHECKING:
    from _hashlib import HASH

DEFAULT_MAX_UPLOADS = 10_000


class RunningHashes:
    def __init__(self, max_uploads: int = DEFAULT_MAX_UPLOADS) -> None:
        self._max = max_uploads
        self._kept: OrderedDict[str, tuple[int, HASH]] = OrderedDict()

    def at(self, upload_id: str, offset: int) -> HASH | None:
        """The hash of the upload's first `offset` bytes, if this instance has it.

        Offset 0 always has one: the hash of nothing. Continue a copy, never the
        object itself: it stays valid until a longer prefix is kept.
        """
        if offset == 0:
            return hashlib.sha256()
        kept = self._kept.get(upload_id)
        if kept is None or kept[0] != offset:
            return None
        self._kept.move_to_end(upload_id)
        return kept[1]

    def keep(self, upload_id: str, offset: int, digest: HASH) -> None:
        """Remember the hash of the upload's first `offset` bytes (committed)."""
        self._kept.pop(upload_id, None)
        self._kept[upload_id] = (offset, digest)
        while len(self._kept) > self._max:
            self._kept.popitem(last=False)

    def sha256_of(self, upload_id: str, length: int) -> str | None:
        """The hex SHA-256 of the whole upload when the kept hash covers all `length` bytes."""
        kept = self._kept.get(upload_id)
        if kept is None or kept[0] != length:
            return None
        return kept[1].hexdigest()

    def forget(self, upload_id: str) -> None:
        self._kept.pop(upload_id, None)

    def __len__(self) -> int:
        return len(self._kept)


class RunningDigest(Protocol):
    """The file's SHA-256 as one request carries it on (`StreamHasher`, `OrderedDigest`)."""

    @property
    def fed(self) -> int:
        """Bytes of this request added to the hash so far."""
        ...

    async def finish(self) -> HASH: ...

    async def close(self) -> None: ...


class CarriedHash:
    """The file's SHA-256 carried through one PATCH that starts at `committed`, when this
    instance kept the hash of the bytes before it."""

    def __init__(self, running: RunningHashes, upload_id: str, committed: int) -> None:
        self._running = running
        self._upload_id = upload_id
        self._committed = committed
        self._carried = running.at(upload_id, committed)
        self._whole: RunningDigest | None = None
        """The hash carried on through this request, once its bytes started passing."""

    def for_parts(self, skip: int) -> StreamHasher | None:
        """The part hasher that carries the hash on (None: nothing to carry); the first
        `skip` bytes it is given, the tail read back ahead of the body, are in it already."""
        if self._carried is None:
            return None
        # The part engine's one job per part feeds the file's hash too.
        hasher = StreamHasher(resume=self._carried, skip=skip)
        self._whole = hasher
        return hasher

    def through(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`body`, hashed as it arrives (no parts here to hash with) when there is a hash
        to carry."""
        if self._carried is None:
            return body
        digest = OrderedDigest("sha256", resume=self._carried)
        self._whole = digest
        return digesting(body, digest)

    async def keep(self, end: int, tail: bytes) -> None:
        """Keep the hash up to `end` for the next PATCH, when it covers exactly that;
        `tail` is what the request stored as the new tail rather than as a part."""
        whole, committed = self._whole, self._committed
        if isinstance(whole, StreamHasher) and tail:
            whole.feed(tail)  # stored, but not as a part
        if whole is not None and end == committed + whole.fed:
            self._running.keep(self._upload_id, end, await whole.finish())
        elif end != committed:
            self._running.forget(self._upload_id)

    async def close(self) -> None:
        if self._whole is not None:
            await self._whole.close()
