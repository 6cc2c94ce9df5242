"""Completing a tus upload whose last byte is committed: the object, its SHA-256, its record.

The multipart upload is completed from the parts S3 holds (their numbers follow
offsets, so parts 1..N of the fixed part size are the file; parts a rejected
request left past them are ignored). The whole-file SHA-256 is the one the
PATCHes carried (`running`) when this instance wrote every byte since the last
commit of another; otherwise the stored object is streamed back and hashed off
the event loop. The result is what the one-shot path records: an UploadResult
with the duplicate of an earlier upload of the same bytes, if any.

How it fails: StorageError when the parts do not add up to the file or S3
fails; the upload then stays complete-but-unrecorded and the client's retried
PATCH (same offset, empty body) completes it again. A multipart upload already
completed by an earlier attempt is not an error.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ingest.errors import MultipartUploadMissing, StorageError
from ingest.model import UploadResult
from ingest.pipeline.ending import ClaimOriginal, settle_duplicate
from ingest.ports import StoredPart
from ingest.usecases.tus.checksum import sha256_of_object
from ingest.usecases.tus.state import TusSession
from ingest.usecases.tus.store import TusStore


async def complete_upload(
    session: TusSession,
    *,
    store: TusStore,
    claim_original: ClaimOriginal,
    lookup_timeout: float,
    wall_clock: Callable[[], datetime],
    sha256: str | None = None,
) -> UploadResult:
    """Complete, hash (unless `sha256` is known) and record the upload."""
    state = session.state
    length = state.upload_length
    if length is None or state.multipart_upload_id is None or state.format is None:
        raise StorageError(f"tus upload {session.session_id} is not ready to complete")
    parts, etag = await complete_multipart(session, store, length)
    return await record_stored(
        session,
        parts=parts,
        etag=etag,
        store=store,
        claim_original=claim_original,
        lookup_timeout=lookup_timeout,
        wall_clock=wall_clock,
        sha256=sha256,
    )


async def record_stored(
    session: TusSession,
    *,
    parts: int,
    etag: str | None,
    store: TusStore,
    claim_original: ClaimOriginal,
    lookup_timeout: float,
    wall_clock: Callable[[], datetime],
    sha256: str | None = None,
) -> UploadResult:
    """The record of the upload's object, stored whole: its SHA-256 read back unless
    `sha256` is known, its duplicate of an earlier upload settled."""
    state = session.state
    length = state.upload_length
    if length is None or state.format is None:
        raise StorageError(f"tus upload {session.session_id} has no length or format to record")
    if sha256 is None:
        sha256, size = await sha256_of_object(store, session.s3_key)
        if size != length:
            raise StorageError(
                f"the stored object of upload {session.session_id} is {size} bytes, not {length}",
                details={"key": session.s3_key, "size": size, "upload_length": length},
            )
    result = UploadResult(
        video_id=state.video_id,
        analysis_id=state.analysis_id,
        size_bytes=length,
        sha256=sha256,
        format=state.format,
        s3_key=session.s3_key,
        etag=etag,
        parts=parts,
        started_at=state.started_at or session.created_at,
        completed_at=wall_clock(),
    )
    return await settle_duplicate(
        claim_original,
        result,
        discard=lambda: store.delete(session.s3_key),
        within=lookup_timeout,
        upload_id=session.session_id,
    )


async def complete_multipart(
    session: TusSession, store: TusStore, length: int
) -> tuple[int, str | None]:
    """Complete the multipart upload from its parts: (how many parts the file has, its ETag)."""
    state = session.state
    assert state.multipart_upload_id is not None
    size = state.part_size
    count = -(-length // size)
    try:
        held = await store.stored_parts(session.s3_key, state.multipart_upload_id)
    except MultipartUploadMissing:
        return count, None  # completed by an earlier attempt; the object is checked next
    parts = _file_parts(held, count, size, length)
    multipart = store.resume_multipart(
        session.s3_key, state.multipart_upload_id, state.part_checksum
    )
    stored = await multipart.complete(parts)
    return count, stored.etag


def _file_parts(held: list[StoredPart], count: int, size: int, length: int) -> list[StoredPart]:
    by_number = {part.number: part for part in held}
    parts: list[StoredPart] = []
    for number in range(1, count + 1):
        part = by_number.get(number)
        expected = size if number < count else length - (count - 1) * size
        if part is None or part.size != expected:
            raise StorageError(
                f"part {number} of the upload is missing or has the wrong size",
                details={"part": number, "expected": expected, "found": part and part.size},
            )
        parts.append(part)
    return parts
