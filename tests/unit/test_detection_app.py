"""The detection app with hand-written fakes of its ports: retries, cleanup, reuse, failures.

The object source and the documents are the local disk implementations
(`infra.objects`) in a temporary directory; the analyser and the sink are
fakes, so these tests say what the app does around an analysis, not what the
analysis finds (tests/unit/test_detection_analysis.py does that).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consumers.detection.analysis import Analysis
from consumers.detection.app import DetectionApp, DetectionGaveUp
from consumers.detection.outcomes import Outcomes
from consumers.detection.pool import DecoderCrashed
from infra.bus.log import BusRecord
from infra.errors import ServiceUnavailable
from infra.objects import LocalDocuments, LocalObjects
from schemas import (
    DetectionCompleted,
    DetectionEvent,
    DetectionFailed,
    Event,
    Topics,
    UploadCompleted,
    VideoInfo,
)

BUCKET = "bucket"
VIDEO = VideoInfo(
    duration_seconds=2.0, fps=10.0, width=16, height=8, codec="MJPG", frame_count=20,
    frames_decoded=20,
)  # fmt: skip


class Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def emit(self, event: Event) -> None:
        self.events.append(event)


class Analyser:
    """Answers `outcome` (or raises it) after `delay`, noting each file it was given."""

    workers = 2

    def __init__(self, outcome: Analysis | Exception, delay: float = 0.0) -> None:
        self.outcome = outcome
        self.delay = delay
        self.files: list[bytes] = []

    async def analyse(self, path: Path, *, priority: int = 5) -> Analysis:
        self.files.append(await asyncio.to_thread(path.read_bytes))
        await asyncio.sleep(self.delay)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


class FlakySource(LocalObjects):
    """The local object source, failing the first `failures` downloads after writing a bit."""

    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures

    async def download(self, bucket: str, key: str, destination: Path) -> int:
        if self.failures:
            self.failures -= 1
            await asyncio.to_thread(destination.write_bytes, b"half")
            raise ServiceUnavailable("S3 is down")
        return await super().download(bucket, key, destination)


async def store(
    root: Path, user: str, name: str, data: bytes, **changes: object
) -> UploadCompleted:
    return await asyncio.to_thread(_store, root, user, name, data, **changes)


def _store(root: Path, user: str, name: str, data: bytes, **changes: object) -> UploadCompleted:
    key = f"uploads/{name}"
    (root / BUCKET / "uploads").mkdir(parents=True, exist_ok=True)
    (root / BUCKET / key).write_bytes(data)
    now = datetime.now(UTC)
    fields: dict[str, object] = {
        "upload_id": f"up-{name}",
        "user_id": user,
        "sequence": 2,
        "filename": name,
        "content_type": None,
        "format": "avi",
        "protocol": "dashboard",
        "s3_bucket": BUCKET,
        "s3_key": key,
        "total_bytes": len(data),
        "video_id": f"vid-{name}",
        "analysis_id": f"ana-{name}",
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "etag": None,
        "parts": 1,
        "started_at": now,
        "completed_at": now,
    }
    fields.update(changes)
    return UploadCompleted(**fields)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def scratch(tmp_path: Path) -> Path:
    (tmp_path / "scratch").mkdir()
    return tmp_path / "scratch"


RECORD = BusRecord(topic="ingest.uploads", key=b"u", value=b"", headers=(), offset=0)


def app_of(tmp_path: Path, analyser: Analyser, source: LocalObjects | None = None) -> DetectionApp:
    return DetectionApp(
        Topics(),
        Sink(),
        source or LocalObjects(tmp_path / "objects"),
        LocalDocuments(tmp_path / "state"),
        analyser,
        scratch_dir=tmp_path / "scratch",
    )


def sink_of(app: DetectionApp) -> Sink:
    sink = app._sink
    assert isinstance(sink, Sink)
    return sink


async def test_a_retriable_download_failure_is_raised_and_leaves_no_file(tmp_path: Path) -> None:
    upload = await store(tmp_path / "objects", "u", "a.avi", b"video bytes")
    analyser = Analyser(Analysis(video=VIDEO))
    app = app_of(tmp_path, analyser, FlakySource(tmp_path / "objects", failures=1))
    with pytest.raises(ServiceUnavailable) as raised:
        await app.handle(upload, RECORD)
    assert raised.value.retriable
    assert await asyncio.to_thread(os.listdir, tmp_path / "scratch") == []
    page = await Outcomes(LocalDocuments(tmp_path / "state")).of_video("u", upload.video_id)
    assert page is not None
    assert page.status == "pending"
    await app.handle(upload, RECORD)  # the runtime's retry
    assert analyser.files == [b"video bytes"]
    [event] = sink_of(app).events
    assert isinstance(event, DetectionCompleted)
    assert event.video == VIDEO
    assert await asyncio.to_thread(os.listdir, tmp_path / "scratch") == []


async def test_a_crashed_decoder_is_published_as_failed_then_dead_lettered(
    tmp_path: Path,
) -> None:
    upload = await store(tmp_path / "objects", "u", "a.avi", b"bytes")
    app = app_of(tmp_path, Analyser(DecoderCrashed("the decoder process died")))
    with pytest.raises(DetectionGaveUp) as raised:
        await app.handle(upload, RECORD)
    assert not raised.value.retriable
    [event] = sink_of(app).events
    assert isinstance(event, DetectionFailed)
    assert (event.error_code, event.analysis_id) == ("CORRUPT", upload.analysis_id)
    assert await asyncio.to_thread(os.listdir, tmp_path / "scratch") == []


async def test_a_stored_file_that_is_gone_is_a_storage_error(tmp_path: Path) -> None:
    upload = await store(tmp_path / "objects", "u", "a.avi", b"bytes", s3_key="uploads/missing")
    app = app_of(tmp_path, Analyser(Analysis(video=VIDEO)))
    with pytest.raises(DetectionGaveUp):
        await app.handle(upload, RECORD)
    [event] = sink_of(app).events
    assert isinstance(event, DetectionFailed)
    assert event.error_code == "STORAGE_ERROR"


async def test_uploads_of_one_file_at_once_are_analysed_once(tmp_path: Path) -> None:
    first = await store(tmp_path / "objects", "u", "a.avi", b"same")
    second = await store(tmp_path / "objects", "u", "b.avi", b"same")
    analyser = Analyser(Analysis(video=VIDEO), delay=0.2)
    app = app_of(tmp_path, analyser)
    await asyncio.gather(app.handle(first, RECORD), app.handle(second, RECORD))
    assert len(analyser.files) == 1
    events = {e.analysis_id: e for e in sink_of(app).events if isinstance(e, DetectionEvent)}
    assert isinstance(events[second.analysis_id], DetectionCompleted)
    reused = [e for e in events.values() if isinstance(e, DetectionCompleted) and e.reused_from]
    assert len(reused) == 1


async def test_a_result_under_another_model_is_not_reused(tmp_path: Path) -> None:
    first = await store(tmp_path / "objects", "u", "a.avi", b"same")
    second = await store(tmp_path / "objects", "u", "b.avi", b"same")
    analyser = Analyser(Analysis(video=VIDEO))
    await app_of(tmp_path, analyser).handle(first, RECORD)
    with_model = app_of(tmp_path, analyser)
    with_model._model = "m.onnx@sha256:0123"
    await with_model.handle(second, RECORD)
    assert len(analyser.files) == 2
    [event] = sink_of(with_model).events
    assert isinstance(event, DetectionCompleted)
    assert (event.reused_from, event.model) == (None, "m.onnx@sha256:0123")
