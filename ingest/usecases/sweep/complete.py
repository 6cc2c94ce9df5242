"""Completing an upload that a dead instance stored whole but never recorded.

A streamer killed between storing the file (its multipart upload completed,
or its one PUT done) and recording the session completed leaves the session
`uploading` on a dead instance beside a complete object. The sweep completes
it as the streamer would have: the session recorded `completed` with the
object's size and SHA-256, the file recorded as the original of its bytes for
its user (or, when the user stored those bytes before, this copy removed and
the original named), and `upload.completed` emitted, numbered `LATE_SEQUENCE`
(after anything the streamer sent), with the fields of any other completion;
the quota consumer charges it from that event. The SHA-256 is the session's
declared `file_hash` when it has one (the pipeline stores a body whole only
once its hash matched that), otherwise the object is streamed back once and
hashed off the event loop; its first bytes give its format either way.

An object that is not what the session declared (another size, not a video,
or a container other than the declared one) is deleted and the upload failed
`unreported`, with the reason, for the settler to emit `upload.failed`.

The discipline is the settler's: a sweeper first takes the session by
compare-and-swap (`settling_until`, long enough to read the object back),
records the completion only while it still holds it, together with
`unreported`, then emits and clears the flag. Of several sweepers at once,
one completes and reports it; one that dies leaves the session taken until
its hold lapses, or its recorded event owed, which the settler sends (that
very event, same id). A DELETE that wins the race cancels the upload: the
object (and the original record this pass made for it) is removed.

How it fails: raises what the store, the document store and the sink raise,
after giving the session back so that the next pass tries again.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec

from infra import layout
from ingest.errors import IngestError, StorageError, UnsupportedFormat
from ingest.model import UploadResult, UploadSession
from ingest.pipeline.config import PipelineConfig
from ingest.pipeline.container import CONTENT_TYPES, HEAD_BYTES, detect_format, resolve_format
from ingest.pipeline.ending import settle_duplicate
from ingest.pipeline.events import EventWriter, completed_event
from ingest.pipeline.parts import plan_part_size
from ingest.ports import DocumentStore, EventSink
from ingest.usecases.duplicates import DuplicateIndex, StoredFile
from ingest.usecases.sessions import SessionService
from ingest.usecases.sweep.settle import LATE_SEQUENCE, SETTLE_SECONDS, session_target
from ingest.usecases.tus.checksum import OrderedDigest
from ingest.usecases.tus.store import TusStore
from schemas import ErrorCode, Event, UploadCompleted

log = logging.getLogger(__name__)

READ_BACK_BYTES_PER_SECOND = 20 * 1024 * 1024
"""A slow pace for reading an object back: the hold on a session covers it at that pace."""

Verdict = Literal["completed", "refused", "absent", "busy"]
"""The object was recorded as the upload; it was not the declared file (deleted, the
session failed `unreported`); there is no whole object; or another sweeper (or a DELETE)
holds or ended the session meanwhile."""


@dataclass(frozen=True)
class Completion:
    verdict: Verdict
    session: UploadSession
    """The session as this call left it (or found it)."""


class _Lost(Exception):
    """The session was no longer held by this completion when it came to record it."""


class _NotDeclared(Exception):
    """The stored object is not the file the session declared: the upload fails with `code`."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message


class Completer:
    def __init__(
        self,
        *,
        sessions: SessionService,
        documents: DocumentStore,
        store: TusStore,
        sink: EventSink,
        pipeline: PipelineConfig,
    ) -> None:
        self._sessions = sessions
        self._documents = documents
        self._duplicates = DuplicateIndex(documents)
        self._store = store
        self._sink = sink
        self._pipeline = pipeline

    async def complete(self, session: UploadSession) -> Completion:
        """Complete `session` (`uploading`, its streamer gone) from its stored object, if whole."""
        size = await self._store.stored_size(session.s3_key)
        if size is None:
            return Completion("absent", session)
        claimed_at = session.updated_at or session.created_at
        now = self._sessions.now()
        held = now + timedelta(seconds=SETTLE_SECONDS + size / READ_BACK_BYTES_PER_SECOND)
        session, taken = await self._sessions.mutate(
            session.session_id, lambda s: _take(s, session.instance_id, now, held)
        )
        if not taken:
            return Completion("busy", session)
        try:
            try:
                fmt, sha256 = await self._examine(session, size)
            except _NotDeclared as refused:
                return await self._refuse(session, held, size, refused)
            return await self._record_and_emit(session, held, size, fmt, sha256, claimed_at)
        except BaseException:
            with contextlib.suppress(IngestError):
                await self._sessions.mutate(session.session_id, lambda s: _given_back(s, held))
            raise

    async def _examine(self, session: UploadSession, size: int) -> tuple[str, str]:
        """The object's format and SHA-256; what the session declared that it is not raises."""
        declared = session.expected_file_size
        if declared is not None and size != declared:
            raise _NotDeclared(
                "STORAGE_ERROR",
                f"the stored file is {size} bytes, not the {declared} bytes declared; "
                "it was deleted",
            )
        verified = session.file_hash.lower() if session.file_hash else None
        head, sha256, read = await read_back(self._store, session.s3_key, whole=verified is None)
        if sha256 is not None and read != size:
            raise StorageError(
                f"the stored file changed while it was read ({read} bytes, not {size})",
                retriable=True,
            )
        try:
            fmt = resolve_format(
                detect_format(head), declared=session.file_format, allowed=CONTENT_TYPES
            )
        except UnsupportedFormat as error:
            raise _NotDeclared(error.event_code, f"{error.message}; it was deleted") from None
        digest = verified or sha256
        assert digest is not None
        return fmt, digest

    async def _refuse(
        self, session: UploadSession, held: datetime, size: int, error: _NotDeclared
    ) -> Completion:
        # Deleted first: should this sweeper die now, the next finds no object and fails it.
        await self._store.delete(session.s3_key)
        log.warning(
            "sweep: upload %s stored a file it did not declare: %s", session.session_id, error
        )
        session, changed = await self._sessions.mutate(
            session.session_id, lambda s: _refused(s, held, size, error)
        )
        return Completion("refused" if changed else "busy", session)

    async def _record_and_emit(
        self,
        session: UploadSession,
        held: datetime,
        size: int,
        fmt: str,
        sha256: str,
        claimed_at: datetime,
    ) -> Completion:
        result = await self._result(session, size, fmt, sha256, claimed_at)
        writer = EventWriter(
            session_target(session, self._store.bucket), self._sink, LATE_SEQUENCE, self._pipeline
        )
        writer.format = fmt
        recorded: list[UploadSession] = []

        async def record(event: Event) -> None:
            updated, changed = await self._sessions.mutate(
                session.session_id, lambda s: _recorded(s, held, result, event, size)
            )
            if not changed:
                raise _Lost
            recorded.append(updated)

        try:
            await writer.emit(completed_event(result), before_send=record)
        except _Lost:
            return await self._lost(session, result)
        except (IngestError, TimeoutError) as error:
            if not recorded:
                raise
            # Recorded and owed: the settler sends that very event on the next pass.
            log.warning(
                "sweep: the completion of %s is owed its event: %s", session.session_id, error
            )
            given_back, _ = await self._sessions.mutate(
                session.session_id, lambda s: _given_back(s, held)
            )
            return Completion("completed", given_back)
        reported, _ = await self._sessions.mutate(session.session_id, lambda s: _reported(s, held))
        log.info(
            "sweep: completed upload %s, stored whole by a server that stopped", session.session_id
        )
        return Completion("completed", reported)

    async def _result(
        self, session: UploadSession, size: int, fmt: str, sha256: str, claimed_at: datetime
    ) -> UploadResult:
        found = await self._duplicates.lookup(session.user_id, sha256)
        # The streamer may have recorded the file as an original before it died: same ids.
        earlier = (
            found.result if found is not None and found.session_id == session.session_id else None
        )
        part_size = plan_part_size(session.expected_file_size, self._pipeline.part_size, size)
        result = UploadResult(
            video_id=earlier.video_id if earlier else str(uuid.uuid4()),
            analysis_id=earlier.analysis_id if earlier else str(uuid.uuid4()),
            size_bytes=size,
            sha256=sha256,
            format=fmt,
            s3_key=session.s3_key,
            etag=earlier.etag if earlier else None,
            parts=earlier.parts if earlier else max(1, -(-size // part_size)),
            started_at=earlier.started_at if earlier else claimed_at,
            completed_at=self._pipeline.wall_clock(),
        )
        stored = StoredFile(
            user_id=session.user_id,
            session_id=session.session_id,
            filename=session.filename,
            result=result,
        )
        return await settle_duplicate(
            lambda _: self._duplicates.claim(stored),
            result,
            discard=lambda: self._store.delete(session.s3_key),
            within=self._pipeline.event_timeout,
            upload_id=session.session_id,
        )

    async def _lost(self, session: UploadSession, result: UploadResult) -> Completion:
        """Someone else ended the session while this completion held it."""
        current, _ = await self._sessions.load(session.session_id)
        if current.status == "cancelled":
            # A DELETE won: nothing of a cancelled upload may stay, nor its original record.
            await self._store.delete(session.s3_key)
            document = layout.stored_file_document(session.user_id, result.sha256)
            found = await self._duplicates.lookup(session.user_id, result.sha256)
            if found is not None and found.session_id == session.session_id:
                await self._documents.delete(document)
        return Completion("busy", current)


async def read_back(store: TusStore, key: str, *, whole: bool) -> tuple[bytes, str | None, int]:
    """The first bytes of a stored object (`HEAD_BYTES`) and, when `whole`, its SHA-256 and
    the bytes read: streamed, hashed in a worker thread, never held whole."""
    digest = OrderedDigest("sha256") if whole else None
    head = b""
    read = 0
    chunks: Any = store.read_object(key)
    try:
        async for chunk in chunks:
            if len(head) < HEAD_BYTES:
                head += chunk[: HEAD_BYTES - len(head)]
            read += len(chunk)
            if digest is None:
                if len(head) >= HEAD_BYTES:
                    break
                continue
            await digest.feed(chunk)
    except BaseException:
        if digest is not None:
            await digest.close()
        raise
    finally:
        # What is left unread is not wanted: its connection goes back now, not at collection.
        with contextlib.suppress(AttributeError):
            await chunks.aclose()
    sha256 = (await digest.digest()).hex() if digest is not None else None
    return head, sha256, read


def _take(
    session: UploadSession, streamer: str | None, now: datetime, until: datetime
) -> UploadSession | None:
    if session.status != "uploading" or session.instance_id != streamer:
        return None
    if session.settling_until is not None and session.settling_until > now:
        return None
    return msgspec.structs.replace(session, settling_until=until)


def _held(session: UploadSession, held: datetime) -> bool:
    return session.status == "uploading" and session.settling_until == held


def _refused(
    session: UploadSession, held: datetime, size: int, error: _NotDeclared
) -> UploadSession | None:
    if not _held(session, held):
        return None
    return msgspec.structs.replace(
        session,
        status="failed",
        message=error.message,
        error_code=error.code,
        bytes_received=size,
        unreported=True,
        settling_until=None,
    )


def _recorded(
    session: UploadSession, held: datetime, result: UploadResult, event: Event, size: int
) -> UploadSession | None:
    if not _held(session, held):
        return None
    assert isinstance(event, UploadCompleted)
    return msgspec.structs.replace(
        session,
        status="completed",
        message="upload completed (recorded by the sweep: its server stopped before it could)",
        bytes_received=size,
        result=result,
        completed_event=event,
        unreported=True,
    )


def _reported(session: UploadSession, held: datetime) -> UploadSession | None:
    if session.settling_until != held or not session.unreported:
        return None
    return msgspec.structs.replace(session, unreported=False, settling_until=None)


def _given_back(session: UploadSession, held: datetime) -> UploadSession | None:
    if session.settling_until != held:
        return None
    return msgspec.structs.replace(session, settling_until=None)
