"""A tus PATCH never waits for its progress events, and an upload's end never overtakes them.

The sink here holds every progress event until the test lets them through:
a PATCH still answers; the completed (or cancelled) event of the upload is
sent only after the progress handed over before it, on this instance the
earlier requests' too; nothing is sent after it; and on another instance,
where nothing can be awaited, the numbers still say which event is newer.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ingest.model import UploadResult
from ingest.pipeline.config import PipelineConfig
from ingest.pipeline.events import (
    EventWriter,
    completed_event,
    drop_progress_after,
    progress_event,
)
from ingest.pipeline.progress import ProgressTracker
from schemas import (
    UploadCancelled,
    UploadCompleted,
    UploadEvent,
    UploadProgress,
    UploadStarted,
)
from tests.fakes import GatedSink, upload_target, video_bytes
from tests.unit.test_tus_support import (
    PART,
    ClientFactory,
    TusRig,
    auth,
    create,
    patch_headers,
    send,
)

LENGTH = 5 * PART


@pytest.fixture
def sink() -> GatedSink:
    return GatedSink()


@pytest.fixture
def rig(sink: GatedSink) -> TusRig:
    return TusRig(sink=sink)


async def _until(condition: Any, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.001)


def _kinds(events: list[UploadEvent]) -> list[type[UploadEvent]]:
    return [type(e) for e in events]


def _in_order_of_sequence(events: list[UploadEvent]) -> bool:
    return [e.sequence for e in events] == sorted({e.sequence for e in events})


async def test_a_patch_answers_while_its_progress_is_held(
    client: TestClient[Any, Any], rig: TusRig, sink: GatedSink
) -> None:
    held = sink.gate(UploadProgress)
    upload_id = await create(client, LENGTH)

    # Two parts stored and the commit: three progress events, none of them accepted.
    assert await send(client, upload_id, 0, video_bytes(2 * PART + 100)) == 2 * PART + 100
    assert _kinds(rig.events(upload_id)) == [UploadStarted]
    assert sink.calls(UploadProgress) == 1  # one in flight, the rest waiting behind it

    # The next PATCH does not wait for them either.
    assert await send(client, upload_id, 2 * PART + 100, b"x" * 100) == 2 * PART + 200
    assert _kinds(rig.events(upload_id)) == [UploadStarted]

    held.set()
    await _until(lambda: len(rig.events(upload_id)) == 5)
    events = rig.events(upload_id)
    assert _kinds(events) == [UploadStarted, *[UploadProgress] * 4]
    assert _in_order_of_sequence(events)
    # Built when handed over: what each request had read by then, never going back.
    received = [e.bytes_received for e in events[1:] if isinstance(e, UploadProgress)]
    assert received == sorted(received)
    assert received[-1] == 2 * PART + 200
    # The numbers each request used are in the document: the next request starts past them.
    assert (await rig.session(upload_id)).state.next_sequence == events[-1].sequence + 1


async def test_the_completed_event_waits_for_the_progress_before_it(
    client: TestClient[Any, Any], rig: TusRig, sink: GatedSink
) -> None:
    held = sink.gate(UploadProgress)
    upload_id = await create(client, LENGTH)
    body = video_bytes(LENGTH)
    await send(client, upload_id, 0, body[: 2 * PART])  # answered, its progress held

    last = asyncio.create_task(
        client.patch(f"/v1/tus/{upload_id}", data=body[2 * PART :], headers=patch_headers(2 * PART))
    )
    # The upload is stored and recorded complete, but its completed event is not sent
    # while progress of this request and of the one before is still held.
    await _until(lambda: rig.store.completed_uploads)
    await asyncio.sleep(0.05)
    assert not last.done()
    assert sink.calls(UploadCompleted) == 0

    held.set()
    response = await last
    assert response.status == 204
    assert response.headers["Upload-Offset"] == str(LENGTH)
    events = rig.events(upload_id)
    assert _kinds(events)[0] == UploadStarted
    assert _kinds(events)[-1] == UploadCompleted
    assert set(_kinds(events)[1:-1]) == {UploadProgress}
    assert _in_order_of_sequence(events)
    # Nothing follows the end, not even later.
    await asyncio.sleep(0.05)
    assert rig.events(upload_id) == events


async def test_a_terminated_upload_reports_its_cancel_after_the_held_progress(
    client: TestClient[Any, Any], rig: TusRig, sink: GatedSink
) -> None:
    held = sink.gate(UploadProgress)
    upload_id = await create(client, LENGTH)
    await send(client, upload_id, 0, video_bytes(2 * PART))

    terminate = asyncio.create_task(client.delete(f"/v1/tus/{upload_id}", headers=auth()))
    async with asyncio.timeout(5):
        while (await rig.session(upload_id)).status != "cancelled":
            await asyncio.sleep(0.001)
    await asyncio.sleep(0.05)
    assert not terminate.done()
    assert sink.calls(UploadCancelled) == 0

    held.set()
    assert (await terminate).status == 204
    events = rig.events(upload_id)
    assert _kinds(events)[-1] == UploadCancelled
    assert UploadProgress in _kinds(events)
    assert _in_order_of_sequence(events)


async def test_on_another_instance_the_end_is_numbered_after_the_held_progress(
    rig: TusRig, sink: GatedSink, aiohttp_client: ClientFactory
) -> None:
    a = (await rig.instance(aiohttp_client, "a")).client
    b = (await rig.instance(aiohttp_client, "b")).client
    held = sink.gate(UploadProgress)
    upload_id = await create(a, LENGTH)
    body = video_bytes(LENGTH)
    await send(a, upload_id, 0, body[: 2 * PART])
    held_on_a = sink.calls(UploadProgress)

    # Instance b cannot wait for what a still sends: it completes the upload meanwhile...
    sink.gates.pop(UploadProgress)
    assert await send(b, upload_id, 2 * PART, body[2 * PART :]) == LENGTH
    (completed,) = sink.of_type(UploadCompleted)

    # ...and a's progress, sent late, is older by its number than the completion.
    held.set()
    await _until(lambda: sink.log.count(("accepted", UploadProgress)) >= held_on_a)
    late = [e for e in rig.events(upload_id) if isinstance(e, UploadProgress)]
    assert late
    assert all(e.sequence < completed.sequence for e in late if e.bytes_received <= 2 * PART)
    assert max(e.sequence for e in rig.events(upload_id)) == completed.sequence


async def test_progress_handed_over_after_the_end_is_never_sent() -> None:
    sink = GatedSink()
    held = sink.gate(UploadProgress)
    config = PipelineConfig(part_size=PART, parts_in_flight=1, progress_interval=1.0)
    writer = EventWriter(upload_target(), sink, 7, config)
    tracker = ProgressTracker(1000, interval=1.0, now=0.0)
    tracker.add(500, 0.0)
    writer.notify(progress_event(tracker, lambda: 0.0, forced=True, parts_stored=0))
    end = writer.prepare(completed_event(_result(1000)))
    completed = writer.post(end, after_progress=True)
    writer.notify(progress_event(tracker, lambda: 0.0, forced=True, parts_stored=1))
    await asyncio.sleep(0.02)
    assert not completed.done()  # behind the progress handed over before it

    held.set()
    await completed
    await asyncio.sleep(0.02)
    assert [type(e) for e in sink.events] == [UploadProgress, UploadCompleted]
    assert [e.sequence for e in sink.for_upload(upload_target().upload_id)] == [7, 8]
    assert writer.next_sequence == 9  # the progress after the end took no number


async def test_shutdown_drops_the_progress_still_held(
    client: TestClient[Any, Any], rig: TusRig, sink: GatedSink
) -> None:
    sink.gate(UploadProgress)
    upload_id = await create(client, LENGTH)
    await send(client, upload_id, 0, video_bytes(2 * PART))
    assert sink.calls(UploadProgress) == 1

    assert await drop_progress_after(0.05) == 1
    assert await drop_progress_after(0.05) == 0  # nothing left running
    assert _kinds(rig.events(upload_id)) == [UploadStarted]


def _result(size: int) -> UploadResult:
    now = datetime.now(UTC)
    return UploadResult(
        video_id="v-1",
        analysis_id="a-1",
        size_bytes=size,
        sha256="0" * 64,
        format="mp4",
        s3_key="k",
        etag="e",
        parts=1,
        started_at=now,
        completed_at=now,
    )
