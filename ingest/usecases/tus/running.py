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
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import TYPE_CHECKING

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
