"""One upload, end to end: a body streamed into S3, with its events.

`stream_upload` reads the first bytes and refuses a non-video before anything
exists in S3, then cuts the body into parts (taking each part's bytes from the
process-wide memory budget before reading it), hashes them off the event loop
and uploads several at once into a multipart upload, each with its SHA-256 for
S3 to verify. A body that fits in its first part is stored by one PUT, with its
SHA-256 likewise. Limits are enforced on the chunk that passes them. It emits
`upload.started`, throttled `upload.progress` (and one per stored part) and
`upload.completed`.

How it fails: on any error, and on cancellation, it stops the part uploads,
gives back every reserved byte, aborts the multipart upload (or deletes what a
PUT cut short stored), shielded from cancellation and bounded in time, so no
part or object is left behind, emits exactly one `upload.failed` or
`upload.cancelled` (bounded; a failure to emit is logged, never raised in place
of the real error), and re-raises the original error. A cancellation
propagates as CancelledError; `Interrupt.reason` says why it happened. Once
the object is complete it is never removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict, TypeVar

from infra import layout
from ingest.errors import IngestError
from ingest.model import UploadResult, UploadTarget
from ingest.pipeline.body import MeteredBody, SizeLimits
from ingest.pipeline.budget import MemoryBudget, Reservation
from ingest.pipeline.container import (
    CONTENT_TYPES,
    HEAD_BYTES,
    detect_format,
    normalize_format,
    resolve_format,
)
from ingest.pipeline.hashing import StreamHasher
from ingest.pipeline.parts import PartReader, plan_part_size
from ingest.pipeline.progress import ProgressSnapshot, ProgressTracker
from ingest.ports import EventSink, MultipartUpload, ObjectStore, StoredObject, StoredPart
from schemas import (
    ErrorCode,
    Event,
    UploadCancelled,
    UploadCompleted,
    UploadFailed,
    UploadProgress,
    UploadProtocol,
    UploadStarted,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

FindDuplicate = Callable[[str, str], Awaitable[str | None]]
"""`(user_id, sha256) -> video_id` of an earlier upload of the same file by that user."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PipelineConfig:
    part_size: int
    """Base part size; raised per upload so it fits in 10,000 parts (`plan_part_size`)."""
    parts_in_flight: int
    """Parts of one upload being hashed or uploaded at once."""
    progress_interval: float
    """Seconds between two throttled progress events."""
    clock: Callable[[], float] = time.monotonic
    """Monotonic seconds, for progress throttling and speed."""
    wall_clock: Callable[[], datetime] = _utc_now
    """Aware datetimes, for event timestamps."""
    event_timeout: float = 10.0
    """Bound on emitting one event and on the duplicate lookup."""
    abort_timeout: float = 30.0
    """Bound on stopping part uploads and on aborting the multipart upload."""
    speed_window: float = 5.0

    def __post_init__(self) -> None:
        if self.part_size <= 0:
            raise ValueError("part_size must be positive")
        if self.parts_in_flight < 1:
            raise ValueError("parts_in_flight must be at least 1")
        if self.progress_interval < 0:
            raise ValueError("progress_interval must be >= 0")
        if self.event_timeout <= 0 or self.abort_timeout <= 0:
            raise ValueError("timeouts must be positive")


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
    find_duplicate: FindDuplicate,
    first_sequence: int = 0,
    video_id: str | None = None,
    analysis_id: str | None = None,
) -> UploadResult:
    """Stream `body` into `target.s3_key` and return what was stored (see the module doc)."""
    upload = _Upload(
        target,
        store=store,
        sink=sink,
        budget=budget,
        config=config,
        interrupt=interrupt,
        find_duplicate=find_duplicate,
        first_sequence=first_sequence,
        video_id=video_id or str(uuid.uuid4()),
        analysis_id=analysis_id or str(uuid.uuid4()),
    )
    return await upload.run(body)


class _UploadFields(TypedDict):
    upload_id: str
    user_id: str
    sequence: int
    occurred_at: datetime
    filename: str | None
    content_type: str | None
    format: str | None
    protocol: UploadProtocol
    priority: int
    auto_analyze: bool
    dashboard_context: dict[str, Any] | None
    metadata: dict[str, Any]
    s3_bucket: str
    s3_key: str
    total_bytes: int | None


class _EventWriter:
    """Emits one upload's events one at a time, numbering them in the order they are sent."""

    def __init__(
        self, target: UploadTarget, sink: EventSink, first_sequence: int, config: PipelineConfig
    ) -> None:
        self._target = target
        self._sink = sink
        self._next = first_sequence
        self._timeout = config.event_timeout
        self._now = config.wall_clock
        # Progress of stored parts is emitted from the part tasks; the lock keeps
        # sequence order and sending order the same.
        self._lock = asyncio.Lock()
        self.format: str | None = normalize_format(target.declared_format)

    async def emit(self, build: Callable[[_UploadFields], Event]) -> None:
        async with asyncio.timeout(self._timeout), self._lock:
            event = build(self._fields())
            self._next += 1
            await self._sink.emit(event)

    def _fields(self) -> _UploadFields:
        target = self._target
        return _UploadFields(
            upload_id=target.upload_id,
            user_id=target.user_id,
            sequence=self._next,
            occurred_at=self._now(),
            filename=target.filename,
            content_type=target.content_type,
            format=self.format,
            protocol=target.protocol,
            priority=target.priority,
            auto_analyze=target.auto_analyze,
            dashboard_context=target.dashboard_context,
            metadata=target.metadata,
            s3_bucket=target.bucket,
            s3_key=target.s3_key,
            total_bytes=target.declared_size,
        )


class _Upload:
    def __init__(
        self,
        target: UploadTarget,
        *,
        store: ObjectStore,
        sink: EventSink,
        budget: MemoryBudget,
        config: PipelineConfig,
        interrupt: Interrupt,
        find_duplicate: FindDuplicate,
        first_sequence: int,
        video_id: str,
        analysis_id: str,
    ) -> None:
        self._target = target
        self._store = store
        self._budget = budget
        self._config = config
        self._interrupt = interrupt
        self._find_duplicate = find_duplicate
        self._video_id = video_id
        self._analysis_id = analysis_id
        self._part_size = plan_part_size(target.declared_size, config.part_size, target.max_size)
        self._limits = SizeLimits.of(target)
        self._events = _EventWriter(target, sink, first_sequence, config)
        self._hasher = StreamHasher()
        self._progress = ProgressTracker(
            target.declared_size,
            interval=config.progress_interval,
            now=config.clock(),
            window=config.speed_window,
        )
        self._started_at = config.wall_clock()
        self._body: MeteredBody | None = None
        self._multipart: MultipartUpload | None = None
        self._started = False
        self._completed = False
        self._in_flight: set[asyncio.Task[None]] = set()
        # Parts whose bytes are being hashed or sent; a part task outlives that
        # while it reports the part's progress.
        self._uploading = 0
        self._slot_freed = asyncio.Event()
        self._reservations: set[Reservation] = set()
        self._stored: list[StoredPart] = []
        self._parts_stored = 0
        self._put: asyncio.Task[StoredObject] | None = None
        self._part_error: BaseException | None = None

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
        fmt = resolve_format(
            detect_format(head), declared=target.declared_format, allowed=target.allowed_formats
        )
        self._events.format = fmt
        await self._events.emit(lambda f: UploadStarted(**f, started_at=self._started_at))
        self._started = True

        stored, parts = await self._store_body(
            reader,
            content_type=CONTENT_TYPES.get(fmt, target.content_type),
            metadata=layout.object_metadata(
                upload_id=target.upload_id, user_id=target.user_id, file_format=fmt
            ),
        )
        self._completed = True
        sha256 = await self._hasher.hexdigest()
        completed_at = self._config.wall_clock()
        duplicate_of = await self._duplicate_of(sha256)

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
            duplicate_of=duplicate_of,
        )
        await self._events.emit(lambda fields: completed_event(fields, result))
        return result

    async def _store_body(
        self, reader: PartReader, *, content_type: str | None, metadata: dict[str, str]
    ) -> tuple[StoredObject, int]:
        """Store the rest of the body; returns the object and the number of parts it took."""
        data, reservation = await self._read_part(reader, taken=0)
        if reader.at_eof:
            # All of it fits in one part: one PUT stores it, where a multipart
            # upload takes three requests, for S3 and for this server alike.
            self._limits.check_complete(self._received)
            return await self._put_whole(data, reservation, content_type, metadata), 1

        multipart = self._multipart = await self._store.start_multipart(
            self._target.s3_key, content_type=content_type, metadata=metadata
        )
        number = taken = 0
        while True:
            number += 1
            taken += len(data)
            self._launch_part(multipart, number, data, reservation)
            del data  # the part task owns it now; it must not outlive its reservation
            if reader.at_eof:
                break
            data, reservation = await self._read_part(reader, taken)
            if not data:  # the body ended on a part boundary
                self._give_back(reservation)
                break
        await self._drain()
        self._limits.check_complete(self._received)
        parts = sorted(self._stored, key=lambda p: p.number)
        return await multipart.complete(parts), len(parts)

    async def _read_part(self, reader: PartReader, taken: int) -> tuple[bytes, Reservation]:
        """The next part (after `taken` bytes), once a slot and its memory are free."""
        await self._wait_for_slot()
        # Reserved before reading on: when the budget is spent the body is not
        # read, and the client is slowed down by TCP.
        reservation = await self._reserve_part(taken)
        data = await reader.read_part(self._part_size, expected=reservation.size or None)
        reservation.shrink(len(data))
        return data, reservation

    async def _put_whole(
        self,
        data: bytes,
        reservation: Reservation,
        content_type: str | None,
        metadata: dict[str, str],
    ) -> StoredObject:
        checksum = self._hasher.submit(data)
        # Shielded: a PUT cut short may still be stored, so the clean-up waits
        # for it to end and deletes what it stored.
        self._put = asyncio.create_task(
            self._put_object(data, checksum, reservation, content_type, metadata),
            name=f"upload {self._target.upload_id} whole",
        )
        del data
        stored = await asyncio.shield(self._put)
        self._completed = True
        self._parts_stored = 1
        await self._emit_progress(forced=True)
        return stored

    async def _put_object(
        self,
        data: bytes,
        checksum: asyncio.Task[str],
        reservation: Reservation,
        content_type: str | None,
        metadata: dict[str, str],
    ) -> StoredObject:
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
            self._give_back(reservation)

    async def _reserve_part(self, taken: int) -> Reservation:
        """The bytes of the next part (after `taken` bytes), from the memory budget."""
        declared = self._target.declared_size
        wanted = self._part_size if declared is None else min(self._part_size, declared - taken)
        reservation = await self._budget.reserve(max(wanted, 0))
        self._reservations.add(reservation)
        return reservation

    def _launch_part(
        self, multipart: MultipartUpload, number: int, data: bytes, reservation: Reservation
    ) -> None:
        checksum = self._hasher.submit(data)
        task = asyncio.create_task(
            self._store_part(multipart, number, data, checksum, reservation),
            name=f"upload {self._target.upload_id} part {number}",
        )
        self._in_flight.add(task)
        self._uploading += 1
        task.add_done_callback(self._part_done)

    async def _store_part(
        self,
        multipart: MultipartUpload,
        number: int,
        data: bytes,
        checksum: asyncio.Task[str],
        reservation: Reservation,
    ) -> None:
        try:
            stored = await multipart.upload_part(number, data, await checksum)
        except Exception as error:
            # Seen by the reader before it takes on another part, not after.
            self._part_error = self._part_error or error
            raise
        finally:
            del data
            self._give_back(reservation)
            self._uploading -= 1
            self._slot_freed.set()
        self._stored.append(stored)
        self._parts_stored += 1
        # Reported after the part's slot is free: waiting for Kafka's
        # acknowledgement must not keep the next part from being sent.
        await self._emit_progress(forced=True)

    def _part_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None and self._part_error is None:
            self._part_error = task.exception()

    def _raise_part_error(self) -> None:
        if self._part_error is not None:
            raise self._part_error

    async def _wait_for_slot(self) -> None:
        self._raise_part_error()
        limit = self._config.parts_in_flight
        # Parts still reporting progress count too, up to as many again: when
        # Kafka is slow the upload slows down, instead of queueing reports.
        while self._uploading >= limit or len(self._in_flight) >= 2 * limit:
            self._slot_freed.clear()
            await self._slot_freed.wait()
            self._raise_part_error()

    async def _drain(self) -> None:
        while self._in_flight:
            await asyncio.wait(set(self._in_flight), return_when=asyncio.FIRST_EXCEPTION)
            self._raise_part_error()
        self._raise_part_error()

    async def _on_chunk(self, size: int) -> None:
        # A failed part stops the body at the next chunk, not at the next part.
        self._raise_part_error()
        now = self._config.clock()
        self._progress.add(size, now)
        if self._started and self._progress.due(now):
            await self._emit_progress(forced=False)

    async def _emit_progress(self, *, forced: bool) -> None:
        def build(fields: _UploadFields) -> UploadProgress:
            now = self._config.clock()
            snapshot: ProgressSnapshot = (
                self._progress.report(now) if forced else self._progress.snapshot(now)
            )
            return UploadProgress(
                **fields,
                bytes_received=snapshot.bytes_received,
                percentage=snapshot.percentage,
                speed_bps=snapshot.speed_bps,
                eta_seconds=snapshot.eta_seconds,
                parts_stored=self._parts_stored,
            )

        try:
            await self._events.emit(build)
        except Exception:
            # A lost progress tick is harmless; failing the upload for it is not.
            log.warning(
                "could not emit progress of upload %s", self._target.upload_id, exc_info=True
            )

    async def _duplicate_of(self, sha256: str) -> str | None:
        try:
            async with asyncio.timeout(self._config.event_timeout):
                return await self._find_duplicate(self._target.user_id, sha256)
        except Exception:
            # Only informational: the file is stored either way.
            log.warning(
                "duplicate lookup failed for upload %s", self._target.upload_id, exc_info=True
            )
            return None

    def _give_back(self, reservation: Reservation) -> None:
        reservation.release()
        self._reservations.discard(reservation)

    # The failure path.

    async def _clean_up(self, error: BaseException) -> bool:
        """Undo everything and report the failure; True when cancelled again meanwhile."""
        interrupted = False
        stopping: list[asyncio.Task[Any]] = [*self._in_flight, *self._hasher.cancel()]
        for task in stopping:
            task.cancel()
        if stopping:
            interrupted |= await _finish(
                asyncio.wait(stopping),
                within=self._config.abort_timeout,
                what=f"stopping the part uploads of {self._target.upload_id}",
            )
        for reservation in list(self._reservations):
            self._give_back(reservation)

        if self._multipart is not None and not self._completed:
            interrupted |= await _finish(
                self._multipart.abort(),
                within=self._config.abort_timeout,
                what=f"aborting the multipart upload of {self._target.upload_id}",
            )
        if self._put is not None and not self._completed:
            interrupted |= await _finish(
                self._discard_put(self._put),
                within=self._config.abort_timeout,
                what=f"removing the object of upload {self._target.upload_id}",
            )
        interrupted |= await _finish(
            self._events.emit(self._failure_event(error)),
            within=self._config.event_timeout,
            what=f"emitting the failure of upload {self._target.upload_id}",
        )
        return interrupted

    async def _discard_put(self, put: asyncio.Task[StoredObject]) -> None:
        """Wait for the PUT of a failed upload to end, and delete what it stored."""
        await asyncio.wait([put])
        if not put.cancelled() and put.exception() is None:
            await self._store.delete(self._target.s3_key)

    def _failure_event(self, error: BaseException) -> Callable[[_UploadFields], Event]:
        received = self._received
        if isinstance(error, asyncio.CancelledError):
            reason = self._interrupt.reason
            if reason == "cancelled":
                message = self._interrupt.message or "cancelled by the user"
                return lambda f: UploadCancelled(**f, bytes_received=received, reason=message)
            if reason == "shutdown":
                return _failed("INTERNAL", "server shutting down", received)
            return _failed("CANCELLED", "the upload was stopped", received)
        if isinstance(error, IngestError):
            return _failed(error.event_code, error.message, received)
        return _failed("INTERNAL", f"{type(error).__name__}: {error}", received)


def completed_event(fields: _UploadFields, result: UploadResult) -> UploadCompleted:
    """The `upload.completed` event of a stored upload, whichever protocol brought it."""
    return UploadCompleted(
        **fields,
        video_id=result.video_id,
        analysis_id=result.analysis_id,
        size_bytes=result.size_bytes,
        sha256=result.sha256,
        etag=result.etag,
        parts=result.parts,
        started_at=result.started_at,
        completed_at=result.completed_at,
        duplicate_of=result.duplicate_of,
    )


def _failed(code: ErrorCode, message: str, received: int) -> Callable[[_UploadFields], Event]:
    return lambda f: UploadFailed(
        **f, error_code=code, error_message=message, bytes_received=received
    )


async def _finish(work: Awaitable[object], *, within: float, what: str) -> bool:
    """Run `work` to its end (or for `within` seconds) even if the caller is cancelled meanwhile.

    Returns whether the caller was cancelled while waiting; a failure of `work`
    is logged, never raised, so it cannot hide the error being cleaned up after.
    """
    current = asyncio.current_task()
    cancel_requests = current.cancelling() if current is not None else 0
    task = asyncio.ensure_future(_bounded(work, within))
    while not task.done():
        # The task's own outcome is looked at below; a cancellation of the
        # caller only means waiting on.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(task)
    if task.cancelled():
        log.warning("%s was cancelled", what)
    elif (failure := task.exception()) is not None:
        log.warning("%s failed: %r", what, failure, exc_info=failure)
    return current is not None and current.cancelling() > cancel_requests


async def _bounded(work: Awaitable[T], within: float) -> T:
    async with asyncio.timeout(within):
        return await work
