"""Which files a user already stored, by SHA-256, so a second upload of one is recognised.

One small document per (user, sha256) in the shared document store: the first
upload to record a hash wins (create-if-absent), later and concurrent ones are
duplicates of it. Raises what the document store raises.
"""

from __future__ import annotations

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

    async def claim(self, stored: StoredFile) -> UploadResult | None:
        """Record `stored` as the original of its bytes unless one is recorded: the recorded
        original's result (this very file's, when it was recorded before), or None."""
        try:
            await self._documents.create(
                layout.stored_file_document(stored.user_id, stored.result.sha256),
                _encoder.encode(stored),
            )
        except VersionConflict:
            # Create-if-absent: of two uploads of one file, exactly one is recorded first.
            found = await self.lookup(stored.user_id, stored.result.sha256)
            return found.result if found is not None else None
        return None
