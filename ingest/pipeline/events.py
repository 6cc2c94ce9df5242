"""The lifecycle events of one upload, whichever way it came in: their fields, builders, writer.

Every event of an upload shares the fields `UploadFields` lists, taken from its
`UploadTarget`; a builder (`started_event`, `progress_event`, ...) adds what
one event type says. `EventWriter` sends one upload's events one at a time,
numbering each in the order it is sent, so sequence order and sending order
are the same.

How it fails: `EventWriter.emit` raises what the sink raises
(EventDeliveryError), what its `before_send` raises, and TimeoutError past the
event timeout; the number of an event that failed is not used again. Builders
never fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypedDict

from ingest.model import UploadResult, UploadTarget
from ingest.pipeline.config import PipelineConfig
from ingest.pipeline.container import normalize_format
from ingest.pipeline.progress import ProgressTracker
from ingest.ports import EventSink
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


class UploadFields(TypedDict):
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


BuildEvent = Callable[[UploadFields], Event]
"""One event, from the fields it shares with every other event of its upload."""

BeforeSend = Callable[[Event], Awaitable[None]]
"""Work on the event as built, before the sink has it (recording a terminal event where
`ingest reconcile` finds it); what it raises stops the event."""


class EventWriter:
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

    async def emit(self, build: BuildEvent, *, before_send: BeforeSend | None = None) -> Event:
        """Build the next event, hand it to `before_send` (when given), then send it; returns it."""
        async with asyncio.timeout(self._timeout), self._lock:
            event = build(self._fields())
            self._next += 1
            if before_send is not None:
                await before_send(event)
            await self._sink.emit(event)
            return event

    def _fields(self) -> UploadFields:
        target = self._target
        return UploadFields(
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


def started_event(started_at: datetime) -> BuildEvent:
    return lambda fields: UploadStarted(**fields, started_at=started_at)


def progress_event(
    tracker: ProgressTracker, clock: Callable[[], float], *, forced: bool, parts_stored: int
) -> BuildEvent:
    """Progress as `tracker` has it when the event is sent; `forced` reports outside the
    throttle (a stored part) and restarts it."""

    def build(fields: UploadFields) -> UploadProgress:
        now = clock()
        snapshot = tracker.report(now) if forced else tracker.snapshot(now)
        return UploadProgress(
            **fields,
            bytes_received=snapshot.bytes_received,
            percentage=snapshot.percentage,
            speed_bps=snapshot.speed_bps,
            eta_seconds=snapshot.eta_seconds,
            parts_stored=parts_stored,
        )

    return build


def completed_event(result: UploadResult) -> BuildEvent:
    """The `upload.completed` event of a stored upload, whichever protocol brought it."""
    return lambda fields: UploadCompleted(
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


def failed_event(code: ErrorCode, message: str, received: int) -> BuildEvent:
    return lambda fields: UploadFailed(
        **fields, error_code=code, error_message=message, bytes_received=received
    )


def cancelled_event(reason: str, received: int) -> BuildEvent:
    return lambda fields: UploadCancelled(**fields, bytes_received=received, reason=reason)
