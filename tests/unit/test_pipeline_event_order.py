"""The events of one upload go out in order without the upload waiting on each in turn.

The started event is sent while the body is stored, and accepted before the
upload completes; progress never holds the upload up; the duplicate index and
the completion record are written at once; a failure is still reported after
the started event, and a started event that fails still fails the upload.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from ingest.errors import ClientDisconnected, EventDeliveryError
from ingest.model import UploadResult
from ingest.pipeline.events import PROGRESS_BACKLOG
from schemas import (
    Event,
    UploadCompleted,
    UploadEvent,
    UploadFailed,
    UploadProgress,
    UploadStarted,
)
from tests.fakes import GatedSink, RecordingEventSink, ScriptedBody, video_bytes
from tests.unit.pipeline_rig import PART, PipelineRig, make_target

KEY = "dashboard-uploads/user-1/upl-1/clip.mp4"


def _rig() -> tuple[PipelineRig, GatedSink]:
    sink = GatedSink()
    return PipelineRig(sink=sink), sink


async def _until(condition: object, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.001)


def _sequences(sink: RecordingEventSink) -> list[int]:
    return [e.sequence for e in sink.events if isinstance(e, UploadEvent)]


@pytest.mark.parametrize("size", [PART // 2, 5 * PART + 3], ids=["one PUT", "multipart"])
async def test_the_body_is_stored_while_started_is_sent_and_completes_only_after(
    size: int,
) -> None:
    rig, sink = _rig()
    started = sink.gate(UploadStarted)
    upload = asyncio.create_task(rig.run(make_target(), ScriptedBody(video_bytes(size), 50)))

    # Every byte reaches S3 while the started event is still unanswered...
    await _until(lambda: rig.store.objects or rig.store.parts_held() == 6)
    await asyncio.sleep(0.02)
    # ...but the upload is not completed (no multipart completion, no completed event).
    assert not upload.done()
    assert rig.store.completed_uploads == []
    assert ("call", UploadCompleted) not in sink.log

    started.set()
    result = await upload
    assert result.size_bytes == size
    assert sink.log.index(("call", UploadCompleted)) > sink.log.index(("accepted", UploadStarted))
    lifecycle = [e for e in sink.events if not isinstance(e, UploadProgress)]
    assert [type(e) for e in lifecycle] == [UploadStarted, UploadCompleted]
    # Progress may reach the sink after the completed event; its number says it is older.
    (completed,) = sink.of_type(UploadCompleted)
    assert max(_sequences(sink)) == completed.sequence


async def test_progress_is_not_sent_before_the_started_event_is_accepted() -> None:
    rig, sink = _rig()
    started = sink.gate(UploadStarted)
    upload = asyncio.create_task(rig.run(make_target(), ScriptedBody(video_bytes(4 * PART), 50)))
    await _until(lambda: rig.store.parts_held() == 4)
    assert [kind for _, kind in sink.log] == [UploadStarted]
    started.set()
    await upload
    assert sink.types()[0] == "ingest.upload.started"


async def test_a_failure_while_started_is_unanswered_is_reported_after_it() -> None:
    rig, sink = _rig()
    started = sink.gate(UploadStarted)
    body = ScriptedBody(video_bytes(3 * PART), 50, then=ConnectionResetError())
    upload = asyncio.create_task(rig.run(make_target(), body))
    await _until(lambda: rig.store.aborted_uploads)
    await asyncio.sleep(0.02)
    # The failure waits for the started event, whose fate is not known yet.
    assert ("call", UploadFailed) not in sink.log
    started.set()
    with pytest.raises(ClientDisconnected):
        await upload
    assert sink.types() == ["ingest.upload.started", "ingest.upload.failed"]
    assert rig.store.parts_held() == 0


async def test_a_started_event_failing_late_stops_the_body_at_the_next_chunk() -> None:
    rig, sink = _rig()
    started = sink.gate(UploadStarted)
    sink.fail_with = EventDeliveryError("the journal's disk refused the write")
    sink.fail_types = (UploadStarted,)
    # A slow client: the started event fails while the body is still coming.
    body = ScriptedBody(video_bytes(40 * PART), 10, delay=0.001)
    upload = asyncio.create_task(rig.run(make_target(), body))
    await _until(lambda: rig.store.parts_held() >= 2)
    started.set()
    with pytest.raises(EventDeliveryError):
        await upload
    assert body.sent < 40 * PART
    assert rig.store.parts_held() == 0
    assert rig.store.completed_uploads == []
    assert sink.types() == ["ingest.upload.failed"]


async def test_an_upload_never_waits_for_its_progress() -> None:
    rig, sink = _rig()
    progress = sink.gate(UploadProgress)
    upload = asyncio.create_task(rig.run(make_target(), ScriptedBody(video_bytes(4 * PART), 50)))
    await _until(lambda: sink.of_type(UploadCompleted))
    assert sink.of_type(UploadProgress) == []

    progress.set()
    result = await upload  # the rig waits for the progress sent in the background
    assert result.parts == 4
    [completed] = sink.of_type(UploadCompleted)
    stored = [p.parts_stored for p in sink.of_type(UploadProgress)]
    assert stored == [1, 2, 3, 4]
    # Sent after the completed event, numbered before it: a consumer orders by sequence.
    assert all(p.sequence < completed.sequence for p in sink.of_type(UploadProgress))


async def test_progress_waiting_for_a_slow_sink_is_bounded_and_keeps_the_latest() -> None:
    rig, sink = _rig()
    progress = sink.gate(UploadProgress)
    parts = PROGRESS_BACKLOG * 3
    upload = asyncio.create_task(
        rig.run(make_target(), ScriptedBody(video_bytes(parts * PART), PART))
    )
    await _until(lambda: sink.of_type(UploadCompleted))
    progress.set()
    await upload
    sent = [p.parts_stored for p in sink.of_type(UploadProgress)]
    # One was in flight when the gate closed; of the rest, the newest are kept, in order.
    assert len(sent) <= PROGRESS_BACKLOG + 1
    assert sent == sorted(sent)
    assert sent[-1] == parts


async def test_the_duplicate_index_and_the_completion_record_are_written_at_once() -> None:
    rig = PipelineRig()
    claiming, recording = asyncio.Event(), asyncio.Event()

    async def claim(result: UploadResult) -> UploadResult | None:
        claiming.set()
        await recording.wait()  # one after the other, this would never return
        return None

    async def record(result: UploadResult, event: Event) -> None:
        recording.set()
        await claiming.wait()

    async with asyncio.timeout(5):
        result = await rig.run(
            make_target(),
            ScriptedBody(video_bytes(PART)),
            claim_original=claim,
            record_completion=record,
        )
    assert result.duplicate_of is None
    assert rig.sink.types()[-1] == "ingest.upload.completed"


async def test_a_duplicate_is_recorded_as_one_before_its_copy_is_removed() -> None:
    rig = PipelineRig()
    data = video_bytes(PART // 2)
    rig.duplicates[("user-1", hashlib.sha256(data).hexdigest())] = "vid-earlier"
    recorded: list[tuple[str | None, bool, Event]] = []

    async def record(result: UploadResult, event: Event) -> None:
        recorded.append((result.duplicate_of, KEY in rig.store.objects, event))

    result = await rig.run(make_target(), ScriptedBody(data), record_completion=record)

    assert result.duplicate_of == "vid-earlier"
    # First recorded as new (written beside the index), then as the duplicate it is,
    # while its copy was still there: the record never names an object already removed.
    assert [(dup, present) for dup, present, _ in recorded] == [
        (None, True),
        ("vid-earlier", True),
    ]
    assert KEY not in rig.store.objects
    [completed] = rig.sink.of_type(UploadCompleted)
    assert completed is recorded[-1][2]
    assert completed.duplicate_of == "vid-earlier"


async def test_an_upload_cancelled_while_started_is_unanswered_reports_both_in_order() -> None:
    rig, sink = _rig()
    started = sink.gate(UploadStarted)
    upload = asyncio.create_task(rig.run(make_target(), ScriptedBody(video_bytes(PART // 2))))
    await _until(lambda: rig.store.objects)
    rig.interrupt.cancel(upload, "cancelled", "stopped by its owner")
    await asyncio.sleep(0.02)
    started.set()
    with pytest.raises(asyncio.CancelledError):
        await upload
    # The started event was not withdrawn by the cancel: it went, then the cancel's.
    assert sink.types() == ["ingest.upload.started", "ingest.upload.cancelled"]
    assert rig.store.objects == {}
