"""Which files a user already stored, by SHA-256, so a second upload of one is recognised.

One small document per (user, sha256) in the shared document store: the first
upload to record a hash wins, later ones are duplicates of it.
"""

from __future__ import annotations

import contextlib

import msgspec

from infra import layout
from ingest.errors import VersionConflict
from ingest.model import UploadResult
from ingest.ports import DocumentStore


class StoredFile(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    session_id: str
    filename: str | None
    result: UploadResult


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(StoredFile)


class DuplicateIndex:
    def __init__(self, documents: DocumentStore) -> None:
        self._documents = documents

    async def lookup(self, user_id: str, sha256: str) -> StoredFile | None:
        stored = await self._documents.read(layout.stored_file_document(user_id, sha256))
        if stored is None:
            return None
        found = _decoder.decode(stored.data)
        # Keys are injective per user; the owner check also holds against a hand-edited bucket.
        return found if found.user_id == user_id else None

    async def video_id_of(self, user_id: str, sha256: str) -> str | None:
        found = await self.lookup(user_id, sha256)
        return found.result.video_id if found is not None else None

    async def record(self, stored: StoredFile) -> None:
        # When the key exists, an earlier upload of the same bytes is already the original.
        with contextlib.suppress(VersionConflict):
            await self._documents.create(
                layout.stored_file_document(stored.user_id, stored.result.sha256),
                _encoder.encode(stored),
            )
