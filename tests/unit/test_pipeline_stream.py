"""stream_upload on the happy path: bytes, parts, hashes, events, progress, backpressure."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import pytest

from ingest.errors import UnsupportedFormat
from ingest.model import UploadResult
from ingest.pipeline.budget import MemoryBudget
from ingest.pipeline.config import PipelineConfig
from schemas import (
    UploadCompleted,
    UploadEvent,
    UploadFailed,
    UploadProgress,
    UploadStarted,
)
from tests.fakes import (
    MemoryMultipartUpload,
    MemoryObjectStore,
    ScriptedBody,
    video_bytes,
)
from tests.unit.pipeline_rig import PART, make_target
from tests.unit.pipeline_rig import PipelineRig as Rig


@pytest.fixture
def rig() -> Rig:
    return Rig()


@pytest.mark.parametrize("chunk", [1, 7, PART, 2 * PART, 1_000])
@pytest.mark.parametrize("size", [5 * PART, 5 * PART + 13])
@pytest.mark.parametrize("declared", [True, False])
async def test_stored_bytes_hash_and_parts(rig: Rig, chunk: int, size: int, declared: bool) -> None:
    data = video_bytes(size, seed=chunk)
    target = make_target(declared_size=size if declared else None)

    result = await rig.run(target, ScriptedBody(data, chunk))

    assert rig.store.objects[target.s3_key] == data
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.size_bytes == size
    expected_parts = -(-size // PART)
    assert result.parts == expected_parts
    upload = rig.only_upload()
    assert upload.state == "completed"
    assert upload.part_sizes == [PART] * (expected_parts - 1) + [size - PART * (expected_parts - 1)]
    assert [p.number for p in upload.completed_parts] == list(range(1, expected_parts + 1))
    assert rig.budget.in_use == 0


@pytest.mark.parametrize("declared", [True, False])
async def test_a_body_smaller_than_a_part_is_stored_by_one_put(rig: Rig, declared: bool) -> None:
    data = video_bytes(40, fmt="webm")
    target = make_target(declared_size=40 if declared else None, declared_format="webm")
    result = await rig.run(target, ScriptedBody(data, 7))
    assert (result.parts, result.size_bytes) == (1, 40)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert rig.store.uploads == []  # no multipart upload at all
    assert rig.store.put_attempts == [target.s3_key]
    assert rig.store.objects[target.s3_key] == data
    info = rig.store.object_info[target.s3_key]
    assert info.content_type == "video/webm"
    assert info.metadata == {"upload-id": "upl-1", "user-id": "user-1", "format": "webm"}
    assert result.etag == info.etag
    [progress] = rig.sink.of_type(UploadProgress)
    assert (progress.bytes_received, progress.parts_stored) == (40, 1)
    assert rig.budget.in_use == 0


async def test_a_body_of_exactly_one_part_is_one_multipart_part(rig: Rig) -> None:
    # The end of the body shows only after the part is full: it goes the multipart way.
    data = video_bytes(PART)
    result = await rig.run(make_target(), ScriptedBody(data, 16))
    assert result.parts == 1
    assert rig.only_upload().part_sizes == [PART]
    assert rig.store.put_attempts == []
    assert rig.store.objects[result.s3_key] == data


async def test_the_part_size_is_raised_to_fit_ten_thousand_parts(rig: Rig) -> None:
    # Up to 10 MB in 64-byte parts would be 156,250 parts: the pipeline raises it to 1 MiB.
    data = video_bytes(1024 * 1024 + 3_000)
    result = await rig.run(make_target(max_size=10_000_000), ScriptedBody(data, 64 * 1024))
    assert result.parts == 2
    assert rig.only_upload().part_sizes == [1024 * 1024, 3_000]


async def test_the_object_is_stored_with_the_detected_media_type(rig: Rig) -> None:
    data = video_bytes(500, fmt="webm")
    target = make_target(declared_format="mkv", content_type="application/octet-stream")
    result = await rig.run(target, ScriptedBody(data))
    assert result.format == "webm"
    upload = rig.only_upload()
    assert upload.content_type == "video/webm"
    assert upload.metadata == {"upload-id": "upl-1", "user-id": "user-1", "format": "webm"}


async def test_a_non_video_is_refused_before_any_upload_exists(rig: Rig) -> None:
    body = ScriptedBody(b"%PDF-1.7\n" + b"0" * 5_000, 100)
    with pytest.raises(UnsupportedFormat):
        await rig.run(make_target(), body)
    assert rig.store.uploads == []
    assert body.sent == 100  # the head only
    [failed] = rig.sink.events
    assert isinstance(failed, UploadFailed)
    assert failed.error_code == "UNSUPPORTED_FORMAT"
    assert rig.budget.in_use == 0


async def test_a_video_of_another_format_than_declared_is_refused(rig: Rig) -> None:
    with pytest.raises(UnsupportedFormat, match="declared as avi"):
        await rig.run(make_target(declared_format="avi"), ScriptedBody(video_bytes(500)))
    assert rig.store.uploads == []


async def test_events_carry_the_target_and_the_result(rig: Rig) -> None:
    data = video_bytes(3 * PART)
    target = make_target(declared_size=len(data))
    result = await rig.run(
        target, ScriptedBody(data), video_id="vid-9", analysis_id="ana-9", first_sequence=7
    )

    events = rig.sink.events
    assert rig.sink.types()[0] == "ingest.upload.started"
    assert rig.sink.types()[-1] == "ingest.upload.completed"
    assert [e.sequence for e in events if isinstance(e, UploadEvent)] == list(
        range(7, 7 + len(events))
    )
    for event in events:
        assert isinstance(event, UploadEvent)
        assert (event.upload_id, event.user_id) == ("upl-1", "user-1")
        assert (event.filename, event.content_type, event.format) == (
            "clip.mp4",
            "video/mp4",
            "mp4",
        )
        assert (event.protocol, event.priority, event.auto_analyze) == ("stream", 7, True)
        assert event.metadata == {"camera": "front"}
        assert event.dashboard_context == {"page": "library"}
        assert (event.s3_bucket, event.s3_key) == ("test-bucket", target.s3_key)
        assert event.total_bytes == len(data)

    [completed] = rig.sink.of_type(UploadCompleted)
    assert (completed.video_id, completed.analysis_id) == ("vid-9", "ana-9")
    assert completed.sha256 == hashlib.sha256(data).hexdigest() == result.sha256
    assert (completed.size_bytes, completed.parts) == (len(data), 3)
    assert completed.etag == result.etag is not None
    assert completed.duplicate_of is None
    [started] = rig.sink.of_type(UploadStarted)
    assert started.started_at == completed.started_at == result.started_at
    assert result.completed_at >= result.started_at


async def test_ids_are_generated_when_not_given(rig: Rig) -> None:
    first = await rig.run(make_target(), ScriptedBody(video_bytes(100)))
    second = await rig.run(make_target(upload_id="upl-2"), ScriptedBody(video_bytes(100)))
    ids = {first.video_id, first.analysis_id, second.video_id, second.analysis_id}
    assert len(ids) == 4
    assert all(uuid.UUID(i) for i in ids)


async def test_a_duplicate_of_an_earlier_upload_is_reported(rig: Rig) -> None:
    data = video_bytes(300)
    rig.duplicates[("user-1", hashlib.sha256(data).hexdigest())] = "vid-earlier"
    target = make_target()
    result = await rig.run(target, ScriptedBody(data))
    assert result.duplicate_of == "vid-earlier"
    assert rig.sink.of_type(UploadCompleted)[0].duplicate_of == "vid-earlier"
    # The copy is removed: the original holds the same bytes, and is what the result names.
    assert target.s3_key not in rig.store.objects
    assert result.s3_key == "earlier/vid-earlier"


async def test_the_first_upload_of_a_file_is_recorded_as_its_original(rig: Rig) -> None:
    data = video_bytes(5 * PART)
    target = make_target()
    result = await rig.run(target, ScriptedBody(data))
    assert result.duplicate_of is None
    assert target.s3_key in rig.store.objects
    assert rig.duplicates[("user-1", result.sha256)] == result.video_id


async def test_a_failing_duplicate_lookup_does_not_fail_the_upload(rig: Rig) -> None:
    async def broken(result: UploadResult) -> UploadResult | None:
        raise ConnectionError("index unavailable")

    rig.claim_original = broken  # type: ignore[method-assign]
    result = await rig.run(make_target(), ScriptedBody(video_bytes(300)))
    assert result.duplicate_of is None
    assert rig.sink.types()[-1] == "ingest.upload.completed"


async def test_a_lost_progress_event_does_not_fail_the_upload(rig: Rig) -> None:
    rig.sink.fail_with = ConnectionError("broker gone for a moment")
    rig.sink.fail_types = (UploadProgress,)
    result = await rig.run(make_target(), ScriptedBody(video_bytes(5 * PART)))
    assert result.parts == 5
    assert len(rig.sink.refused) == 5
    assert rig.sink.types() == ["ingest.upload.started", "ingest.upload.completed"]


# Progress.


async def test_progress_is_throttled_and_forced_on_every_stored_part() -> None:
    now = [0.0]
    rig = Rig(
        config=PipelineConfig(
            part_size=1_000, parts_in_flight=2, progress_interval=0.5, clock=lambda: now[0]
        )
    )

    def tick(index: int) -> None:
        now[0] = index / 8  # exact in binary, so the 0.5 s interval is exactly 4 chunks

    data = video_bytes(500)
    await rig.run(make_target(declared_size=500), ScriptedBody(data, 10, before_chunk=tick))

    progress = rig.sink.of_type(UploadProgress)
    throttled = [p for p in progress if p.parts_stored == 0]
    # None before upload.started (the head is 7 chunks), then one every 0.5 s.
    assert [p.bytes_received for p in throttled] == list(range(80, 481, 40))
    first = throttled[0]
    assert first.percentage == 16.0
    assert first.speed_bps == pytest.approx(80.0)
    assert first.eta_seconds == pytest.approx(420 / 80)
    [stored] = [p for p in progress if p.parts_stored == 1]
    assert (stored.bytes_received, stored.percentage, stored.eta_seconds) == (500, 100.0, 0.0)
    assert progress[-1] is stored


async def test_progress_without_a_declared_size_has_no_percentage(rig: Rig) -> None:
    await rig.run(make_target(), ScriptedBody(video_bytes(2 * PART)))
    progress = rig.sink.of_type(UploadProgress)
    assert [p.parts_stored for p in progress] == [1, 2]
    assert all(p.percentage is None and p.eta_seconds is None for p in progress)
    assert progress[-1].bytes_received == 2 * PART


# Backpressure and concurrency.


@pytest.mark.parametrize("in_flight", [1, 2, 3])
async def test_parts_in_flight_are_bounded(in_flight: int) -> None:
    rig = Rig(
        store=MemoryObjectStore(part_delay=0.01),
        config=PipelineConfig(part_size=PART, parts_in_flight=in_flight, progress_interval=60),
    )
    data = video_bytes(12 * PART)
    await rig.run(make_target(), ScriptedBody(data, PART))
    assert rig.store.max_parts_in_flight == in_flight
    assert rig.store.objects["dashboard-uploads/user-1/upl-1/clip.mp4"] == data


async def test_a_stalled_store_stops_reading_the_body() -> None:
    store = MemoryObjectStore()
    store.gate = asyncio.Event()
    rig = Rig(
        store=store,
        budget=MemoryBudget(3 * PART),
        config=PipelineConfig(part_size=PART, parts_in_flight=8, progress_interval=60),
    )
    body = ScriptedBody(video_bytes(40 * PART), PART)
    upload = asyncio.create_task(rig.run(make_target(), body))
    for _ in range(50):
        await asyncio.sleep(0.001)
    # Three parts fit in the budget; the fourth is not read until one is stored.
    assert body.sent == 3 * PART
    assert rig.budget.in_use == 3 * PART
    assert rig.budget.waiting == 1
    store.gate.set()
    result = await asyncio.wait_for(upload, timeout=5)
    assert result.parts == 40
    assert rig.budget.in_use == 0


async def test_concurrent_uploads_never_exceed_the_budget() -> None:
    store = MemoryObjectStore(part_delay=0.002)
    budget = MemoryBudget(3 * PART)
    in_use: list[int] = []
    waiting: list[int] = []

    def probe(upload: MemoryMultipartUpload, number: int, data: bytes) -> None:
        in_use.append(budget.in_use)
        waiting.append(budget.waiting)

    store.on_part = probe
    rig = Rig(
        store=store,
        budget=budget,
        config=PipelineConfig(part_size=PART, parts_in_flight=4, progress_interval=60),
    )
    bodies = {f"upl-{i}": video_bytes(10 * PART + 1 + i, seed=i) for i in range(5)}
    results = await asyncio.gather(
        *(
            rig.run(make_target(upload_id=uid, s3_key=f"k/{uid}"), ScriptedBody(data, 50))
            for uid, data in bodies.items()
        )
    )

    assert [r.parts for r in results] == [11] * 5
    for uid, data in bodies.items():
        assert store.objects[f"k/{uid}"] == data
    assert max(in_use) <= budget.total
    assert store.max_bytes_in_flight <= budget.total
    # The budget really was the limit: it was full and uploads queued for it.
    assert max(in_use) == budget.total
    assert max(waiting) >= 1
    assert budget.in_use == 0
    assert budget.waiting == 0


async def test_the_body_is_never_buffered_beyond_the_parts_in_flight() -> None:
    store = MemoryObjectStore()
    store.gate = asyncio.Event()
    rig = Rig(
        store=store,
        config=PipelineConfig(part_size=PART, parts_in_flight=2, progress_interval=60),
    )
    body = ScriptedBody(video_bytes(30 * PART), 16)
    upload = asyncio.create_task(rig.run(make_target(), body))
    for _ in range(50):
        await asyncio.sleep(0.001)
    assert body.sent == 2 * PART
    store.gate.set()
    assert (await asyncio.wait_for(upload, timeout=5)).parts == 30
