"""The events one request emits for a tus upload, numbered from the sequence its lease reserved.

The same events as every other way in (`upload.started`, throttled and per-part
`upload.progress`, `upload.completed` / `failed` / `cancelled`), built by the
pipeline's event builders and writer (`ingest.pipeline.events`) from an
`UploadTarget`, so the fields are the same.
What tus adds is the numbering: each request starts at the upload's
`next_sequence`, counts every event it builds (progress included, when it is
handed over, sent or not), and the count goes back into the session
document, so the sequence keeps increasing whichever instance handles the
next request: a progress event still going out when the next request's
events go is older by its number. Progress is reported for the whole file:
the committed offset plus what this request has read.

Progress goes in the background (`EventWriter.notify`): a PATCH never waits
for it. Lifecycle events wait for the progress handed over before them, on
this instance the earlier requests' too (`ProgressFollower` hands each
request's writer the progress of the one before), so on one instance an
upload's end never reaches the sink before its progress (across instances the
`sequence` orders them); once the end is built no progress is sent.

How it fails: `emit` raises EventDeliveryError (bounded by the event timeout);
a progress event that cannot be sent is logged and skipped.
"""

from __future__ import annotations

import asyncio
import weakref
from datetime import datetime

from ingest.model import UploadResult, UploadTarget
from ingest.pipeline.config import PipelineConfig
from ingest.pipeline.events import (
    BeforeSend,
    BuildEvent,
    EventWriter,
    cancelled_event,
    completed_event,
    failed_event,
    progress_event,
    started_event,
)
from ingest.pipeline.progress import ProgressTracker
from ingest.ports import EventSink
from ingest.usecases.tus.state import TusSession
from schemas import ErrorCode


class Unheard:
    """Where a partial upload's events go: nowhere. A piece of a file is no upload of its own;
    its final upload reports the file once (see `final`)."""

    async def emit(self, event: object) -> None:
        return None

    async def check(self) -> None:
        return None


UNHEARD = Unheard()


def upload_target(
    session: TusSession, *, bucket: str, allowed_formats: tuple[str, ...], max_size: int
) -> UploadTarget:
    state = session.state
    return UploadTarget(
        upload_id=session.session_id,
        user_id=session.user_id,
        bucket=bucket,
        s3_key=session.s3_key,
        filename=session.filename,
        content_type=state.content_type,
        declared_format=state.format or session.file_format,
        allowed_formats=allowed_formats,
        protocol="tus",
        priority=session.priority,
        auto_analyze=session.auto_analyze,
        metadata=session.metadata,
        dashboard_context=session.dashboard_context,
        declared_size=state.upload_length,
        max_size=max_size,
        min_size=0,
    )


class ProgressFollower:
    """The event writer of each upload's latest request on this instance, kept while alive
    (its progress may still be going out), so the next request's events follow it."""

    def __init__(self) -> None:
        self._writers: weakref.WeakValueDictionary[str, EventWriter] = weakref.WeakValueDictionary()

    def writer(
        self, target: UploadTarget, sink: EventSink, config: PipelineConfig, first_sequence: int
    ) -> EventWriter:
        upload_id = target.upload_id
        before = self._writers.get(upload_id)
        follow = before.progress if before is not None else None
        writer = EventWriter(target, sink, first_sequence, config, follow=_pending(follow))
        self._writers[upload_id] = writer
        return writer


def _pending(task: asyncio.Task[None] | None) -> asyncio.Task[None] | None:
    return task if task is not None and not task.done() else None


class TusEvents:
    def __init__(self, writer: EventWriter, config: PipelineConfig, length: int | None) -> None:
        self._writer = writer
        self._config = config
        self._length = length
        self._tracker = self._new_tracker(0)
        self.parts_stored = 0
        self.started = False

    @property
    def next_sequence(self) -> int:
        """The sequence number after every event this request built.

        Counting what was built, not what was accepted, keeps the numbers strictly
        increasing: a number an event may have used (or may still use, a progress event
        going out in the background) is never handed out again.
        """
        return self._writer.next_sequence

    def set_format(self, fmt: str) -> None:
        self._writer.format = fmt

    def start_from(self, committed: int) -> None:
        """Report progress for the whole file, from the committed offset on."""
        self._tracker = self._new_tracker(committed)

    async def emit(self, build: BuildEvent, *, before_send: BeforeSend | None = None) -> None:
        """A lifecycle event, sent after the progress handed over before it (module doc)."""
        await self._writer.emit(build, before_send=before_send, after_progress=True)

    async def upload_started(self, started_at: datetime) -> None:
        await self.emit(started_event(started_at))
        self.started = True

    def on_chunk(self, size: int) -> None:
        now = self._config.clock()
        self._tracker.add(size, now)
        if self.started and self._tracker.due(now):
            self.progress(forced=False)

    def progress(self, *, forced: bool) -> None:
        """Report progress in the background; never waits, never raises."""
        if not self.started:
            return  # nothing is reported before the upload is known to be a video
        build = progress_event(
            self._tracker, self._config.clock, forced=forced, parts_stored=self.parts_stored
        )
        self._writer.notify(build)

    async def completed(self, result: UploadResult, *, before_send: BeforeSend) -> None:
        """Report the upload complete; `before_send` records the event as built (it counts in
        `next_sequence` by then)."""
        await self.emit(completed_event(result), before_send=before_send)

    async def failed(self, code: ErrorCode, message: str, received: int) -> None:
        await self.emit(failed_event(code, message, received))

    async def cancelled(self, reason: str, received: int) -> None:
        await self.emit(cancelled_event(reason, received))

    def _new_tracker(self, committed: int) -> ProgressTracker:
        return ProgressTracker(
            self._length,
            interval=self._config.progress_interval,
            now=self._config.clock(),
            window=self._config.speed_window,
            already=committed,
        )
