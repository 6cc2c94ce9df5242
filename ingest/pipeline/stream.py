"""One upload, end to end: a body streamed into S3, with its events.

`stream_upload` reads the first bytes and refuses a non-video before anything
exists in S3, then hands the body to the part engine (`engine`), which cuts it
into parts within the process-wide memory budget, hashes them off the event
loop and uploads several at once into a multipart upload, each with its
CRC32C for S3 to verify; the whole-file SHA-256 is fed as the parts go. A
body that fits in its first part is stored by one PUT, with its SHA-256 (the
file's own, hashed once) for S3 to verify. Limits are enforced on the chunk
that passes them; `meter(received)`, when given, is asked on every chunk and
stops the body with what it raises (the quota, which moves while a body
streams). It emits `upload.started` (sent while the body is stored, and
accepted before the upload completes: the object is only kept, or the
multipart upload completed, once it is), throttled `upload.progress` (and one
per stored part; sent in the background, never waited for) and
`upload.completed` (`events`), after recording the file as the original of its
bytes for its user, or removing it as a duplicate of the original already
recorded (`duplicate_of`). `record_completion`, when given, gets the result and
the completed event as built, before the sink does (the caller records it where
`ingest reconcile` can find it again, so a completed upload never loses its
event); it is written while the duplicate index is asked, and written again,
before the copy is removed, for a duplicate.

How it fails: on any error, and on cancellation, it stops the part uploads,
gives back every reserved byte, aborts the multipart upload (or deletes what a
PUT cut short stored), shielded from cancellation and bounded in time, so no
part or object is left behind, emits exactly one `upload.failed` or
`upload.cancelled` (bounded; a failure to emit is logged, never raised in place
of the real error; after the started event, whatever became of that one),
and re-raises the original error. A started event that fails fails the upload
(EventDeliveryError) at the next chunk or before it completes. A cancellation
propagates as CancelledError; `Interrupt.reason` says why it happened. Once
the object is complete it is never removed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

from infra import layout
from ingest.errors import ChecksumMismatch, IngestError
from ingest.model import UploadResult, UploadTarget
from ingest.pipeline.body import MeteredBody, SizeLimits
from ingest.pipeline.budget import MemoryBudget
from ingest.pipeline.config import PipelineConfig
from ingest.pipeline.container import CONTENT_TYPES, HEAD_BYTES, detect_format, resolve_format
from ingest.pipeline.ending import ClaimOriginal, RecordCompletion, report_completed, run_to_end
from ingest.pipeline.engine import PartEngine, Piece
from ingest.pipeline.events import (
    BuildEvent,
    EventWriter,
    cancelled_event,
    failed_event,
    progress_event,
    started_event,
)
from ingest.pipeline.hashing import StreamHasher
from ingest.pipeline.parts import PartReader, plan_part_size
from ingest.pipeline.progress import ProgressTracker
from ingest.ports import EventSink, MultipartUpload, ObjectStore, StoredObject, StoredPart
from schemas import Event

log = logging.getLogger(__name__)


@dataclass
class Interrupt:
    """Why the task running `stream_upload` is being cancelled; set it before cancelling."""

    reason: Literal["cancelled", "shutdown"] | None = None
    message: str | None = None
    """Human-readable reason carried by `upload.cancelled`."""

    def cancel(
        self,
        task: asyncio.Task[Any],
        reason: Literal["cancelled", "shutdown"],
        message: str | None = None,
    ) -> None:
        self.reason = reason
        self.message = message
        task.cancel()


async def stream_upload(
    target: UploadTarget,
    body: AsyncIterator[bytes],
    *,
    store: ObjectStore,
    sink: EventSink,
    budget: MemoryBudget,
    config: PipelineConfig,
    interrupt: Interrupt,
    claim_original: ClaimOriginal,
    meter: Callable[[int], None] | None = None,
    record_completion: RecordCompletion | None = None,
    first_sequence: int = 0,
    video_id: str | None = None,
    analysis_id: str | None = None,
) -> UploadResult:
    """Stream `body` into `target.s3_key` and return what was stored (see the module doc)."""
    upload = _Upload(
        target,
        store=store,
        events=EventWriter(target, sink, first_sequence, config),
        budget=budget,
        config=config,
        interrupt=interrupt,
        claim_original=claim_original,
        meter=meter,
        record_completion=record_completion,
        video_id=video_id or str(uuid.uuid4()),
        analysis_id=analysis_id or str(uuid.uuid4()),
    )
    return await upload.run(body)


class _Upload:
    def __init__(
        self,
        target: UploadTarget,
        *,
        store: ObjectStore,
        events: EventWriter,
        budget: MemoryBudget,
        config: PipelineConfig,
        interrupt: Interrupt,
        claim_original: ClaimOriginal,
        meter: Callable[[int], None] | None,
        record_completion: RecordCompletion | None,
        video_id: str,
        analysis_id: str,
    ) -> None:
        self._target = target
        self._store = store
        self._events = events
        self._config = config
        self._interrupt = interrupt
        self._claim_original = claim_original
        self._meter = meter
        self._record_completion = record_completion
        self._video_id = video_id
        self._analysis_id = analysis_id
        self._limits = SizeLimits.of(target)
        self._hasher = StreamHasher()
        self._engine = PartEngine(
            part_size=plan_part_size(target.declared_size, config.part_size, target.max_size),
            budget=budget,
            parts_in_flight=config.parts_in_flight,
            hasher=self._hasher,
            open_multipart=self._start_multipart,
            on_stored=self._part_stored,
            name=f"upload {target.upload_id}",
            expected_bytes=target.declared_size,
        )
        self._progress = ProgressTracker(
            target.declared_size,
            interval=config.progress_interval,
            now=config.clock(),
            window=config.speed_window,
        )
        self._started_at = config.wall_clock()
        self._body: MeteredBody | None = None
        self._format: str | None = None
        self._started = False
        self._start: asyncio.Task[Event] | None = None
        self._completed = False
        self._parts_stored = 0
        self._put: asyncio.Task[StoredObject] | None = None

    @property
    def _received(self) -> int:
        return self._body.received if self._body is not None else 0

    async def run(self, body: AsyncIterator[bytes]) -> UploadResult:
        try:
            return await self._stream(body)
        except asyncio.CancelledError as cancelled:
            await self._clean_up(cancelled)
            raise
        except Exception as error:
            if await self._clean_up(error):
                # Cancelled again while cleaning up: the canceller must see it.
                raise asyncio.CancelledError() from error
            raise

    # The happy path, top to bottom.

    async def _stream(self, body: AsyncIterator[bytes]) -> UploadResult:
        target = self._target
        self._limits.check_declared()
        self._body = MeteredBody(body, self._limits, on_chunk=self._on_chunk)
        reader = PartReader(self._body)

        head = await reader.peek(HEAD_BYTES)
        if reader.exhausted:
            # A body that short is more usefully refused for its size than its bytes.
            self._limits.check_complete(self._received)
        fmt = self._format = resolve_format(
            detect_format(head), declared=target.declared_format, allowed=target.allowed_formats
        )
        self._events.format = fmt
        # Sent while the body is stored; accepted before the upload may complete (`_committing`).
        self._start = self._events.post(self._events.prepare(started_event(self._started_at)))
        self._started = True

        stored, parts = await self._store_body(reader)
        self._completed = True
        sha256 = await self._hasher.hexdigest()
        completed_at = self._config.wall_clock()
        result = UploadResult(
            video_id=self._video_id,
            analysis_id=self._analysis_id,
            size_bytes=self._received,
            sha256=sha256,
            format=fmt,
            s3_key=stored.key,
            etag=stored.etag,
            parts=parts,
            started_at=self._started_at,
            completed_at=completed_at,
        )
        return await report_completed(
            result,
            events=self._events,
            claim=self._claim_original,
            record=self._record_completion,
            discard=lambda: self._store.delete(stored.key),
            within=self._config.event_timeout,
            upload_id=target.upload_id,
        )

    async def _store_body(self, reader: PartReader) -> tuple[StoredObject, int]:
        """Store the rest of the body; returns the object and the number of parts it took."""
        engine = self._engine
        first = await engine.read_piece(reader)
        if reader.at_eof:
            # All of it fits in one part: one PUT stores it, where a multipart
            # upload takes three requests, for S3 and for this server alike.
            self._limits.check_complete(self._received)
            return await self._put_whole(first), 1
        last = await engine.store_full_parts(reader, first)
        if last is not None:
            await engine.launch(last)
        await engine.drain()
        self._limits.check_complete(self._received)
        # Before completing: a multipart upload aborted leaves nothing, a completed one would.
        await self._verify_sha256()
        await self._committing()
        assert engine.multipart is not None  # the first part was full, so it was launched
        parts = sorted(engine.stored, key=lambda p: p.number)
        return await engine.multipart.complete(parts), len(parts)

    async def _verify_sha256(self) -> None:
        """ChecksumMismatch when the whole body (hashed by now) is not the file declared."""
        expected = self._target.expected_sha256
        if expected is None:
            return
        computed = await self._hasher.hexdigest()
        if computed != expected:
            raise ChecksumMismatch(
                "the body's SHA-256 differs from the one declared "
                "(file_hash, Repr-Digest or Content-Digest)",
                details={"expected_sha256": expected, "computed_sha256": computed},
            )

    async def _committing(self) -> None:
        """Wait until the started event is accepted: an upload whose start could not be
        reported fails (the clean-up removes what it stored), as it would have before."""
        assert self._start is not None
        # Shielded: an upload cancelled meanwhile still has its start reported, then its end.
        await asyncio.shield(self._start)

    def _check_started(self) -> None:
        """Stop the body at once when the started event has failed already."""
        start = self._start
        if start is not None and start.done() and not start.cancelled():
            error = start.exception()
            if error is not None:
                raise error

    def _stored_as(self) -> tuple[str | None, dict[str, str]]:
        """The media type and the metadata the object is stored with."""
        target = self._target
        metadata = layout.object_metadata(
            upload_id=target.upload_id, user_id=target.user_id, file_format=self._format
        )
        return CONTENT_TYPES.get(self._format or "", target.content_type), metadata

    async def _start_multipart(self) -> MultipartUpload:
        content_type, metadata = self._stored_as()
        return await self._store.start_multipart(
            self._target.s3_key, content_type=content_type, metadata=metadata
        )

    async def _put_whole(self, piece: Piece) -> StoredObject:
        data = piece.take()
        # The whole file is this one piece: its SHA-256 is both the file's and the PUT's.
        checksum = asyncio.ensure_future(self._sha256_b64(self._hasher.feed(data)))
        if self._target.expected_sha256 is not None:
            # Before the PUT: a body that is not the declared file is never stored.
            await self._verify_sha256()
        # Shielded: a PUT cut short may still be stored, so the clean-up waits
        # for it to end and deletes what it stored.
        self._put = asyncio.create_task(
            self._put_object(data, checksum, piece),
            name=f"upload {self._target.upload_id} whole",
        )
        del data
        stored = await asyncio.shield(self._put)
        await self._committing()
        self._completed = True
        self._parts_stored = 1
        self._emit_progress(forced=True)
        return stored

    async def _sha256_b64(self, fed: asyncio.Task[str]) -> str:
        await fed
        return base64.b64encode((await self._hasher.finish()).digest()).decode("ascii")

    async def _put_object(
        self, data: bytes, checksum: asyncio.Future[str], piece: Piece
    ) -> StoredObject:
        content_type, metadata = self._stored_as()
        try:
            return await self._store.put_object(
                self._target.s3_key,
                data,
                await checksum,
                content_type=content_type,
                metadata=metadata,
            )
        finally:
            del data
            self._engine.give_back(piece.reservation)

    async def _part_stored(self, part: StoredPart) -> None:
        self._parts_stored += 1
        self._emit_progress(forced=True)

    async def _on_chunk(self, size: int) -> None:
        if self._meter is not None:
            # The quota left moves with other uploads and new snapshots: asked on every chunk.
            self._meter(self._received)
        # A failed part or start stops the body at the next chunk, not at the next part.
        self._engine.check()
        self._check_started()
        now = self._config.clock()
        self._progress.add(size, now)
        if self._started and self._progress.due(now):
            self._emit_progress(forced=False)

    def _emit_progress(self, *, forced: bool) -> None:
        # Sent in the background: an upload never waits on its progress (lossy by design).
        build = progress_event(
            self._progress, self._config.clock, forced=forced, parts_stored=self._parts_stored
        )
        self._events.notify(build)

    # The failure path.

    async def _clean_up(self, error: BaseException) -> bool:
        """Undo everything and report the failure; True when cancelled again meanwhile."""
        upload_id = self._target.upload_id
        within = self._config.abort_timeout
        interrupted = False
        stopping = self._engine.cancel()
        if stopping:
            interrupted |= await run_to_end(
                asyncio.wait(stopping),
                within=within,
                what=f"stopping the part uploads of {upload_id}",
            )
        self._engine.release_all()

        multipart = self._engine.multipart
        if multipart is not None and not self._completed:
            interrupted |= await run_to_end(
                multipart.abort(),
                within=within,
                what=f"aborting the multipart upload of {upload_id}",
            )
        if self._put is not None and not self._completed:
            interrupted |= await run_to_end(
                self._discard_put(self._put),
                within=within,
                what=f"removing the object of upload {upload_id}",
            )
        # Sent after the started event (the writer keeps the order), whatever became of it.
        interrupted |= await run_to_end(
            self._events.emit(self._failure_event(error)),
            within=self._config.event_timeout,
            what=f"emitting the failure of upload {upload_id}",
        )
        self._note_failed_start()
        return interrupted

    def _note_failed_start(self) -> None:
        start = self._start
        if start is None or not start.done() or start.cancelled():
            return
        if (failure := start.exception()) is not None:
            log.warning(
                "the started event of upload %s failed: %r", self._target.upload_id, failure
            )

    async def _discard_put(self, put: asyncio.Task[StoredObject]) -> None:
        """Wait for the PUT of a failed upload to end, and delete what it stored."""
        await asyncio.wait([put])
        if not put.cancelled() and put.exception() is None:
            await self._store.delete(self._target.s3_key)

    def _failure_event(self, error: BaseException) -> BuildEvent:
        received = self._received
        if isinstance(error, asyncio.CancelledError):
            reason = self._interrupt.reason
            if reason == "cancelled":
                message = self._interrupt.message or "cancelled by the user"
                return cancelled_event(message, received)
            if reason == "shutdown":
                return failed_event("INTERNAL", "server shutting down", received)
            return failed_event("CANCELLED", "the upload was stopped", received)
        if isinstance(error, IngestError):
            return failed_event(error.event_code, error.message, received)
        # A bug, logged with its stack where it surfaces: the event says so without the internals.
        return failed_event(
            "INTERNAL",
            "an unexpected server error stopped the upload (see the server log)",
            received,
        )
