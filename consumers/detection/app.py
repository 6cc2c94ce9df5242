"""The detection consumer: a `ConsumerApp` analysing each completed upload that asked for it.

For each `ingest.upload.completed` it writes the results page's document
(`pending`, or `not_requested` without `auto_analyze`), then finds the
outcome: the earlier result of the same file for the same user under the
same model, or else a fresh analysis (the object streamed to a temporary
file, analysed in the process pool, the file removed whatever happens). It
stores the outcome (page document, and by file hash for reuse), then
publishes `ingest.detection.completed` or `.failed` to `ingest.detections`
under the `analysis_id` the upload promised.

Several files at once, even from one partition (`max_in_flight`; the
runtime commits only the finished prefix). Downloads and analyses are let in
by the upload's `priority`. Uploads of one file by one user are analysed
once: a lock per (user, SHA-256) makes the second wait for the first's
stored result. A record read again (a restart before the commit) finds its
outcome in the page document and publishes that same event again (same
`event_id`), without analysing.

How it fails: S3, document and broker errors that may pass are retriable
ServiceErrors (the runtime retries with backoff; the temporary file is gone
before the retry). A file the decoder could not get through (past the time
limit: TIMEOUT; the worker died: CORRUPT), an analysis that raised
(INTERNAL) or a stored file that is gone (STORAGE_ERROR) is published as
`ingest.detection.failed` and then raised as DetectionGaveUp (not
retriable), so the runtime sends the record to `ingest.dlq` and the
partition goes on.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import aiofiles.os

from consumers.detection import reports
from consumers.detection.analysis import Analysis
from consumers.detection.model import identity, load_model
from consumers.detection.outcomes import Outcomes
from consumers.detection.pool import (
    AnalysisError,
    AnalysisPool,
    DecoderCrashed,
    DecoderTimedOut,
    PriorityGate,
)
from consumers.detection.settings import DetectionSettings
from infra.errors import ServiceError
from infra.feeds import Record, TopicPartition
from infra.objects import Documents, ObjectMissing, ObjectSource
from schemas import DetectionCompleted, DetectionFailed, Event, Topics, UploadCompleted
from schemas.api import DetectionStatus

if TYPE_CHECKING:
    from consumers.runtime.app import ConsumerApp

log = logging.getLogger(__name__)


class EventSink(Protocol):
    async def emit(self, event: Event) -> None: ...


class Analyser(Protocol):
    workers: int

    async def analyse(self, path: Path, *, priority: int = 5) -> Analysis: ...


class DetectionGaveUp(ServiceError):
    """The file could not be analysed; `ingest.detection.failed` says why. Dead-letter it."""

    error_code = "DETECTION_FAILED"


class DetectionApp:
    def __init__(
        self,
        topics: Topics,
        sink: EventSink,
        source: ObjectSource,
        documents: Documents,
        analyser: Analyser,
        *,
        scratch_dir: Path,
        model: str | None = None,
        max_in_flight: int | None = None,
        name: str = "detection",
    ) -> None:
        self._topics = topics
        self._sink = sink
        self._source = source
        self._outcomes = Outcomes(documents)
        self._analyser = analyser
        self._scratch = scratch_dir
        self._model = model
        self._max_in_flight = max_in_flight or 2 * analyser.workers
        self._name = name
        # Files on local disk at once: those analysed plus as many downloaded ahead.
        self._staging = PriorityGate(2 * analyser.workers)
        self._files: dict[tuple[str, str], asyncio.Lock] = {}
        self.analyses_started = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def topics(self) -> frozenset[str]:
        return frozenset({self._topics.uploads})

    @property
    def max_in_flight(self) -> int:
        return self._max_in_flight

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        return None  # no state of its own: the documents are the state

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        return None

    async def handle(self, event: Event, record: Record) -> None:
        if not isinstance(event, UploadCompleted):
            return
        known = await self._outcomes.of_video(event.user_id, event.video_id)
        if known is not None and known.analysis_id == event.analysis_id and known.detection:
            log.info("analysis %s was done before: publishing it again", event.analysis_id)
            await self._publish(known.detection)
            return
        if not event.auto_analyze:
            await self._outcomes.save_video(event.user_id, reports.page(event, "not_requested"))
            return
        await self._outcomes.save_video(event.user_id, reports.page(event, "pending"))
        outcome = await self._outcome_of(event)
        status: DetectionStatus = (
            "completed" if isinstance(outcome, DetectionCompleted) else "failed"
        )
        await self._outcomes.save_video(event.user_id, reports.page(event, status, outcome))
        await self._publish(outcome)

    async def _publish(self, outcome: reports.Outcome) -> None:
        await self._sink.emit(outcome)
        if isinstance(outcome, DetectionFailed):
            raise DetectionGaveUp(
                f"analysis {outcome.analysis_id}: {outcome.error_code}: {outcome.error_message}"
            )

    async def _outcome_of(self, upload: UploadCompleted) -> reports.Outcome:
        key = (upload.user_id, upload.sha256)
        lock = self._files.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                earlier = await self._outcomes.of_file(upload.user_id, upload.sha256)
                # A file that is no video was judged without the model: reusable under any.
                if earlier is not None and (
                    not earlier.is_valid_video or earlier.model == self._model
                ):
                    log.info("analysis %s reuses %s", upload.analysis_id, earlier.analysis_id)
                    return reports.reused(earlier, upload)
                outcome = await self._analyse(upload)
                if isinstance(outcome, DetectionCompleted):
                    await self._outcomes.save_file(upload.user_id, outcome)
                return outcome
        finally:
            if not lock.locked() and self._files.get(key) is lock:
                del self._files[key]

    async def _analyse(self, upload: UploadCompleted) -> reports.Outcome:
        path = self._scratch / f"detection-{uuid.uuid4().hex}"
        async with self._staging.slot(upload.priority):
            try:
                await self._source.download(upload.s3_bucket, upload.s3_key, path)
                self.analyses_started += 1
                analysis = await self._analyser.analyse(path, priority=upload.priority)
            except ObjectMissing as error:
                return reports.failed(upload, "STORAGE_ERROR", error.message)
            except DecoderTimedOut as error:
                return reports.failed(upload, "TIMEOUT", error.message)
            except DecoderCrashed as error:
                return reports.failed(upload, "CORRUPT", error.message)
            except AnalysisError as error:
                return reports.failed(upload, "INTERNAL", error.message)
            finally:
                with suppress(FileNotFoundError):
                    await aiofiles.os.remove(path)
        return reports.completed(upload, analysis, self._model)


@asynccontextmanager
async def open_detection(
    settings: DetectionSettings,
    topics: Topics,
    sink: EventSink,
    source: ObjectSource,
    documents: Documents,
) -> AsyncIterator[DetectionApp]:
    """The detection consumer with its process pool, stopped on exit.

    Raises ModelNotUsable before anything starts when the configured model is
    no usable ONNX model.
    """
    model = None
    if settings.model is not None:
        await asyncio.to_thread(load_model, settings.model)
        model = await asyncio.to_thread(identity, settings.model)
    await aiofiles.os.makedirs(settings.scratch_dir, exist_ok=True)
    pool = AnalysisPool(
        settings.analysis(), workers=settings.workers, time_limit=settings.time_limit_seconds
    )
    try:
        await pool.start()
        yield DetectionApp(
            topics,
            sink,
            source,
            documents,
            pool,
            scratch_dir=settings.scratch_dir,
            model=model,
            max_in_flight=settings.in_flight,
        )
    finally:
        await pool.close()


if TYPE_CHECKING:

    def _implements(app: DetectionApp) -> ConsumerApp:
        return app
