"""`rebuild_index` over the in-memory fakes: sessions written before the open index existed
(no entry) are entered, so that the next pass ends and cleans them like any other."""

from __future__ import annotations

from infra import layout
from ingest.usecases.sessions import SessionService
from schemas.api import CreateUploadRequest
from tests.unit.sweep.support import ANN, open_entries, stored, streaming_on, sweeper
from tests.unit.test_tus_support import TTL, TusRig


async def test_sessions_without_an_entry_are_entered_and_then_swept(rig: TusRig) -> None:
    sessions = SessionService(rig.documents, ttl_seconds=TTL, clock=rig.clock)
    dead = await streaming_on(rig, "killed-before-the-index", parts=2)
    unused = await sessions.create(
        ANN, CreateUploadRequest(filename="a.mp4"), protocol="stream", file_format="mp4"
    )
    done = await sessions.create(
        ANN, CreateUploadRequest(filename="b.mp4"), protocol="stream", file_format="mp4"
    )
    await sessions.finish(done.session_id, "completed")
    indexed = await streaming_on(rig, "killed-after-the-index", parts=1)
    # Written by a version without the index: no entries, but for the last one.
    for session in (dead, unused, done):
        await rig.documents.delete(layout.open_session_entry(session.session_id))
    rig.clock.advance(TTL + 1)
    assert open_entries(rig) == {indexed.session_id}, "no pass would see the others"

    entered = await sweeper(rig).rebuild_index()

    assert entered == 2
    assert open_entries(rig) == {dead.session_id, unused.session_id, indexed.session_id}
    report = await sweeper(rig).sweep()
    assert sorted(report.failed) == sorted([dead.session_id, indexed.session_id])
    assert report.expired == [unused.session_id]
    assert (await stored(rig, dead.session_id)).status == "failed"
    assert rig.store.parts_held() == 0
    assert open_entries(rig) == set()
    assert await sweeper(rig).rebuild_index() == 2, "ended sessions that were not completed"
