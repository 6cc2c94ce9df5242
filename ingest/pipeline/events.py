"""The lifecycle events of one upload, whichever way it came in: their fields, builders, writer.

Every event of an upload shares the fields `UploadFields` lists, taken from its
`UploadTarget`; a builder (`started_event`, `progress_event`, ...) adds what
one event type says. `EventWriter` numbers each event when it is handed over,
so sequence order and the order of the calls are the same, and sends:

- lifecycle events (`emit`, `post`) one after another: each goes to the sink
  only once the one before it was accepted (or failed), so the sink sees them
  in order whatever it does meanwhile (a broker that takes one, a journal that
  takes the next). `post` sends an event `prepare` built in the background
  and returns its delivery, to await later (the upload's started event, while
  its body is stored); `emit` builds, sends and waits;
- progress (`notify`) in the background, never waited for by the upload and
  waiting only for the lifecycle event sent before it (the started event):
  lossy by design, one in flight per upload, in order, at most
  `PROGRESS_BACKLOG` waiting (past that the oldest is dropped). A consumer
  orders progress and lifecycle events of one upload by `sequence`. A
  lifecycle event posted `after_progress` goes to the sink only once the
  progress handed over before it is sent or dropped, and progress handed over
  once a terminal event (completed, failed, cancelled) is built is not sent:
  it would reach the sink after the upload's end. A writer may `follow` the
  progress of an earlier writer of the same upload (an earlier request of a
  resumable upload): its progress goes after that, and so do its lifecycle
  events posted `after_progress`.

How it fails: `emit` (and the delivery `post` returns) raises what the sink
raises (EventDeliveryError), what its `before_send` raises, and TimeoutError
past the event timeout, counted from the call; the number of an event that
failed is not used again. A progress event that cannot be sent is logged and
dropped. Builders never fail.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
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

log = logging.getLogger(__name__)


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


PROGRESS_BACKLOG = 16
"""Progress events of one upload waiting for the sink at most; the oldest goes first."""

_Queued = tuple[Event, "asyncio.Task[Event] | None"]
"""A progress event, and the lifecycle event's delivery it is sent after."""

_Waiting = deque[_Queued]
"""Progress events built and not yet handed to the sink, oldest first: one sender's queue."""

_TERMINAL = (UploadCompleted, UploadFailed, UploadCancelled)

_background: set[asyncio.Task[None]] = set()
"""Progress senders still running: the event loop itself keeps only weak references."""


def _keep(work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    task = asyncio.create_task(work, name=name)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def progress_sent() -> None:
    """Return once every progress event handed over so far is sent (or dropped)."""
    while _background:
        await asyncio.wait(list(_background))


async def drop_progress_after(within: float) -> int:
    """Give the progress still going out `within` seconds, then withdraw the rest (shutdown:
    the sink is stopped next, and progress is lossy); how many senders were stopped."""
    loop = asyncio.get_running_loop()
    running = [task for task in _background if task.get_loop() is loop]
    if not running:
        return 0
    _, pending = await asyncio.wait(running, timeout=within)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return len(pending)


class EventWriter:
    """Sends one upload's events, numbered in the order they are handed over (module doc)."""

    def __init__(
        self,
        target: UploadTarget,
        sink: EventSink,
        first_sequence: int,
        config: PipelineConfig,
        *,
        follow: asyncio.Task[None] | None = None,
    ) -> None:
        self._target = target
        self._sink = sink
        self._next = first_sequence
        self._timeout = config.event_timeout
        self._now = config.wall_clock
        self._last: asyncio.Task[Event] | None = None
        """The delivery of the last lifecycle event handed over; the next one waits for it."""
        self._sender: asyncio.Task[None] | None = follow
        """The last progress sender started (or `follow`): done once every progress event
        handed over so far is sent or dropped, since each sender waits for the one before."""
        self._waiting: _Waiting | None = None
        """The queue of the running sender while it may take more; None once a lifecycle
        event was posted after it (progress handed over later goes after that event)."""
        self._ended = False
        self.format: str | None = normalize_format(target.declared_format)

    @property
    def next_sequence(self) -> int:
        """The number of the next event built: one past every number handed out so far."""
        return self._next

    @property
    def progress(self) -> asyncio.Task[None] | None:
        """Done once every progress event handed over so far is sent or dropped (for a later
        writer of the same upload to `follow`)."""
        return self._sender

    async def emit(
        self,
        build: BuildEvent,
        *,
        before_send: BeforeSend | None = None,
        after_progress: bool = False,
    ) -> Event:
        """Build the next event, hand it to `before_send` (when given), then send it once the
        events before it are accepted (and, `after_progress`, the progress before it sent or
        dropped); returns it once the sink has accepted it."""
        event = self.prepare(build)
        return await self.post(event, before_send=before_send, after_progress=after_progress)

    def prepare(self, build: BuildEvent) -> Event:
        """Build and number the next event without sending it (for `post` later)."""
        event = build(self._fields())
        self._next += 1
        if isinstance(event, _TERMINAL):
            self._ended = True
        return event

    def post(
        self,
        event: Event,
        *,
        before_send: BeforeSend | None = None,
        after_progress: bool = False,
    ) -> asyncio.Task[Event]:
        """Send a prepared event in the background, after the lifecycle events handed over
        before it (and, `after_progress`, once the progress handed over before it is sent or
        dropped); the task is its delivery (what `emit` waits for, its errors included).

        Cancelling the task withdraws the event if the sink does not have it yet; the
        events posted after it still go, in order.
        """
        deadline = asyncio.get_running_loop().time() + self._timeout
        progress = self._sender if after_progress else None
        # Progress handed over from now on is sent after this event, by a sender of its own:
        # the running one must be able to finish without it, since this event may wait for it.
        self._waiting = None
        delivery = asyncio.create_task(
            self._deliver(self._last, progress, event, before_send, deadline),
            name=f"event of upload {self._target.upload_id}",
        )
        self._last = delivery
        return delivery

    def notify(self, build: BuildEvent) -> None:
        """Send a progress event in the background (module doc); never raises, never waits."""
        if self._ended:
            return  # it would be sent after the event that ended the upload
        queued = (self.prepare(build), self._last)
        sender = self._sender
        if self._waiting is None or sender is None or sender.done():
            # Past the bound (a sink far slower than progress is made) the oldest is dropped.
            self._waiting = deque(maxlen=PROGRESS_BACKLOG)
            self._sender = _keep(
                self._send_progress(self._waiting, sender), f"progress {self._target.upload_id}"
            )
        self._waiting.append(queued)

    async def _deliver(
        self,
        previous: asyncio.Task[Event] | None,
        progress: asyncio.Task[None] | None,
        event: Event,
        before_send: BeforeSend | None,
        deadline: float,
    ) -> Event:
        async with asyncio.timeout_at(deadline):
            if previous is not None:
                # Whatever became of it (its owner sees that): only the order matters here.
                await asyncio.wait([previous])
            if before_send is not None:
                await before_send(event)
            if progress is not None and not progress.done():
                # Sent or dropped, each within its own bound: this event must reach the sink
                # after them.
                await asyncio.wait([progress])
            await self._sink.emit(event)
        return event

    async def _send_progress(self, waiting: _Waiting, after: asyncio.Task[None] | None) -> None:
        if after is not None and not after.done():
            # One sender at a time per upload, oldest first (an earlier writer's included).
            await asyncio.wait([after])
        while waiting:
            event, after_event = waiting.popleft()
            try:
                async with asyncio.timeout(self._timeout):
                    if after_event is not None:
                        # Not before the lifecycle event sent before it (the started event),
                        # and not at all when that one failed: nothing was announced.
                        await asyncio.wait([after_event])
                        if after_event.cancelled() or after_event.exception() is not None:
                            continue
                    await self._sink.emit(event)
            except Exception:
                # A lost progress tick is harmless; failing the upload for it is not.
                log.warning(
                    "could not emit progress of upload %s", self._target.upload_id, exc_info=True
                )

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
