"""The sweep and DELETE: a cancel whose streamer is dead or never read it is settled and
reported once, also when a DELETE and a sweep run at once."""

from __future__ import annotations

import asyncio

from infra import layout
from ingest.usecases.sessions import SessionService
from schemas import UploadCancelled
from tests.fakes import video_bytes
from tests.unit.sweep.support import (
    open_entries,
    settler,
    stored,
    stored_whole_by,
    streaming_on,
    sweeper,
    terminal_events,
)
from tests.unit.test_tus_support import (
    DEAD_AFTER,
    PART,
    TTL,
    Instance,
    TusRig,
    auth,
)


async def test_delete_of_an_unused_session_reports_the_cancel(rig: TusRig, node: Instance) -> None:
    created = await node.client.post("/v1/uploads", json={"filename": "clip.mp4"}, headers=auth())
    session_id = (await created.json())["session_id"]
    response = await node.client.delete(f"/v1/uploads/{session_id}", headers=auth())
    assert response.status == 204
    (event,) = terminal_events(rig, session_id)
    assert isinstance(event, UploadCancelled)
    assert not (await stored(rig, session_id)).unreported


async def test_delete_of_an_upload_whose_streamer_is_dead_aborts_and_reports_it(
    rig: TusRig, node: Instance
) -> None:
    session = await streaming_on(rig, "killed-4")
    response = await node.client.delete(f"/v1/uploads/{session.session_id}", headers=auth())
    assert response.status == 204
    assert rig.store.parts_held() == 0
    (event,) = terminal_events(rig, session.session_id)
    assert isinstance(event, UploadCancelled)
    assert event.bytes_received == 2 * PART
    # Nothing is owed: the sweep only closes the entry.
    report = await sweeper(rig).sweep()
    assert report.settled == []
    assert report.aborted == []
    assert open_entries(rig) == set()


async def test_delete_of_a_file_its_dead_streamer_stored_but_never_recorded_removes_it(
    rig: TusRig, node: Instance
) -> None:
    size = 2 * PART + 10
    session = await stored_whole_by(rig, "killed-5", video_bytes(size, seed=5))
    assert session.s3_key in rig.store.objects

    response = await node.client.delete(f"/v1/uploads/{session.session_id}", headers=auth())

    assert response.status == 204
    assert session.s3_key not in rig.store.objects, "no upload delivered it: nothing kept"
    (event,) = terminal_events(rig, session.session_id)
    assert isinstance(event, UploadCancelled)
    assert event.bytes_received == size
    report = await sweeper(rig).sweep()
    assert report.completed == report.aborted == []
    assert open_entries(rig) == set()


async def test_a_file_left_at_the_key_of_a_failed_upload_is_deleted_by_the_sweep(
    rig: TusRig,
) -> None:
    session = await stored_whole_by(rig, "killed-6", video_bytes(PART, seed=6))
    sessions = SessionService(rig.documents, ttl_seconds=TTL, clock=rig.clock)
    # Its streamer recorded the failure but died before deleting what it had stored.
    await sessions.finish(session.session_id, "failed", message="boom", error_code="INTERNAL")

    report = await sweeper(rig).sweep()

    assert report.aborted == [session.session_id]
    assert session.s3_key not in rig.store.objects
    assert open_entries(rig) == set()


async def test_a_completed_uploads_file_is_never_taken_for_a_leftover(rig: TusRig) -> None:
    data = video_bytes(PART, seed=7)
    session = await stored_whole_by(rig, "killed-7", data)
    assert (await sweeper(rig).sweep()).completed == [session.session_id]

    leftovers = await settler(rig).abort_leftovers(await stored(rig, session.session_id))

    assert (leftovers.uploads, leftovers.objects) == (0, 0)
    assert rig.store.objects[session.s3_key] == data


async def test_a_cancel_its_streamer_died_before_reading_is_settled_by_the_sweep(
    rig: TusRig, node: Instance
) -> None:
    streamer = rig.heartbeats("dying-1")
    await streamer.beat()
    session = await streaming_on(rig, "dying-1")
    response = await node.client.delete(f"/v1/uploads/{session.session_id}", headers=auth())
    assert response.status == 204
    marker = layout.cancel_marker("dying-1", session.session_id)
    assert marker in rig.documents.snapshot(), "carried to the living streamer"
    assert terminal_events(rig, session.session_id) == []

    rig.clock.advance(DEAD_AFTER + 1)  # the streamer was killed before it read the marker
    await rig.heartbeats("front").beat()
    report = await sweeper(rig).sweep()
    assert report.markers_removed == 1
    assert marker not in rig.documents.snapshot()
    assert rig.store.parts_held() == 0
    (event,) = terminal_events(rig, session.session_id)
    assert isinstance(event, UploadCancelled)
    assert open_entries(rig) == set()


async def test_a_delete_and_a_sweep_at_once_report_one_ending(rig: TusRig, node: Instance) -> None:
    session = await streaming_on(rig, "killed-5")
    response, _ = await asyncio.gather(
        node.client.delete(f"/v1/uploads/{session.session_id}", headers=auth()),
        sweeper(rig, racing=7).sweep(),
    )
    assert response.status in (204, 409)
    assert len(terminal_events(rig, session.session_id)) == 1
    assert rig.store.parts_held() == 0
