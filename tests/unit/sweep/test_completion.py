"""The sweep over the in-memory fakes: a file a killed instance stored whole but never recorded
is completed (or, when it is not the file declared, deleted and failed), reported once.

The "killed" streamer is a session claimed by an instance that never beat, whose
multipart upload the test completes itself: what a streamer killed between
storing the file and recording it leaves behind.
"""

from __future__ import annotations

import asyncio
import hashlib

from ingest.errors import ServiceUnavailable
from ingest.model import UploadResult
from ingest.usecases.duplicates import DuplicateIndex, StoredFile
from ingest.usecases.sweep.settle import LATE_SEQUENCE
from schemas import UploadCompleted, UploadFailed
from tests.fakes import video_bytes
from tests.unit.sweep.support import open_entries, stored, stored_whole_by, sweeper
from tests.unit.test_tus_support import PART, TusRig

SIZE = 3 * PART + 100


def completions(rig: TusRig, upload_id: str) -> list[UploadCompleted]:
    return [e for e in rig.events(upload_id) if isinstance(e, UploadCompleted)]


async def test_a_file_stored_whole_by_a_killed_instance_is_completed_and_reported_once(
    rig: TusRig,
) -> None:
    data = video_bytes(SIZE, seed=1)
    session = await stored_whole_by(rig, "killed-1", data)

    report = await sweeper(rig).sweep()

    assert report.completed == [session.session_id]
    assert report.failed == report.refused == []
    (event,) = completions(rig, session.session_id)
    assert event.sequence == LATE_SEQUENCE
    assert event.size_bytes == SIZE
    assert event.sha256 == hashlib.sha256(data).hexdigest()
    assert (event.user_id, event.s3_key, event.format) == ("ann", session.s3_key, "mp4")
    assert (event.filename, event.metadata, event.total_bytes) == (
        "clip.mp4",
        {"camera": "a"},
        SIZE,
    )
    assert event.duplicate_of is None
    assert event.parts == 4
    assert rig.store.objects_read == [session.s3_key], "read back once, for its SHA-256"
    assert rig.store.objects[session.s3_key] == data

    ended = await stored(rig, session.session_id)
    assert ended.status == "completed"
    assert not ended.unreported
    assert ended.settling_until is None
    assert ended.completed_event == event, "kept for `ingest reconcile`"
    assert ended.result is not None
    assert ended.result.video_id == event.video_id
    original = await DuplicateIndex(rig.documents).lookup("ann", event.sha256)
    assert original is not None
    assert original.session_id == session.session_id
    assert open_entries(rig) == set()

    again = await sweeper(rig).sweep()
    assert again.looked_at == 0
    assert len(completions(rig, session.session_id)) == 1


async def test_a_declared_hash_is_the_files_and_it_is_not_read_for_it(rig: TusRig) -> None:
    data = video_bytes(SIZE, seed=2)
    digest = hashlib.sha256(data).hexdigest()
    session = await stored_whole_by(rig, "killed-2", data, file_hash=digest)

    assert (await sweeper(rig).sweep()).completed == [session.session_id]
    (event,) = completions(rig, session.session_id)
    assert event.sha256 == digest
    # Only its first bytes, for its format: the pipeline stored it whole once its hash matched.
    assert rig.store.objects_read == [session.s3_key]


async def test_a_file_of_another_size_than_declared_is_deleted_and_the_upload_failed(
    rig: TusRig,
) -> None:
    session = await stored_whole_by(rig, "killed-3", video_bytes(SIZE, seed=3), declared=SIZE + 1)

    report = await sweeper(rig).sweep()

    assert report.refused == [session.session_id]
    assert report.settled == [session.session_id]
    assert report.completed == []
    assert session.s3_key not in rig.store.objects
    (event,) = rig.events(session.session_id)
    assert isinstance(event, UploadFailed)
    assert event.error_code == "STORAGE_ERROR"
    assert f"{SIZE} bytes, not the {SIZE + 1} bytes declared" in event.error_message
    assert event.sequence == LATE_SEQUENCE
    assert event.bytes_received == SIZE
    ended = await stored(rig, session.session_id)
    assert (ended.status, ended.unreported) == ("failed", False)
    assert open_entries(rig) == set()


async def test_a_stored_file_that_is_not_a_video_is_deleted_and_the_upload_failed(
    rig: TusRig,
) -> None:
    session = await stored_whole_by(rig, "killed-4", b"\x00" * SIZE)

    assert (await sweeper(rig).sweep()).refused == [session.session_id]
    assert session.s3_key not in rig.store.objects
    (event,) = rig.events(session.session_id)
    assert isinstance(event, UploadFailed)
    assert event.error_code == "UNSUPPORTED_FORMAT"


async def test_a_copy_of_a_file_the_user_stored_before_names_the_original_and_is_removed(
    rig: TusRig,
) -> None:
    data = video_bytes(SIZE, seed=5)
    first = await stored_whole_by(rig, "killed-5", data)
    assert (await sweeper(rig).sweep()).completed == [first.session_id]
    (original,) = completions(rig, first.session_id)

    copy = await stored_whole_by(rig, "killed-6", data)
    assert (await sweeper(rig).sweep()).completed == [copy.session_id]
    (event,) = completions(rig, copy.session_id)
    assert event.duplicate_of == original.video_id
    # As the pipeline records a duplicate: the result points at the original's object.
    result = (await stored(rig, copy.session_id)).result
    assert result is not None
    assert result.s3_key == first.s3_key
    assert copy.s3_key not in rig.store.objects
    assert first.s3_key in rig.store.objects


async def test_ids_the_killed_streamer_recorded_for_the_file_are_kept(rig: TusRig) -> None:
    data = video_bytes(SIZE, seed=6)
    session = await stored_whole_by(rig, "killed-7", data)
    # It recorded the file as the original of its bytes, then died before recording the session.
    earlier = UploadResult(
        video_id="video-of-the-streamer",
        analysis_id="analysis-of-the-streamer",
        size_bytes=SIZE,
        sha256=hashlib.sha256(data).hexdigest(),
        format="mp4",
        s3_key=session.s3_key,
        etag="etag-1",
        parts=4,
        started_at=session.created_at,
        completed_at=session.created_at,
    )
    index = DuplicateIndex(rig.documents)
    mine = StoredFile(user_id="ann", session_id=session.session_id, filename=None, result=earlier)
    assert await index.claim(mine) is None

    assert (await sweeper(rig).sweep()).completed == [session.session_id]
    (event,) = completions(rig, session.session_id)
    assert (event.video_id, event.analysis_id) == (earlier.video_id, earlier.analysis_id)
    assert event.duplicate_of is None, "not a copy of itself"
    assert rig.store.objects[session.s3_key] == data


async def test_a_completion_whose_event_the_bus_refused_is_sent_by_the_next_pass(
    rig: TusRig,
) -> None:
    session = await stored_whole_by(rig, "killed-8", video_bytes(SIZE, seed=8))
    rig.sink.fail_with = ServiceUnavailable("the broker does not answer")

    first = await sweeper(rig).sweep()
    assert first.completed == [session.session_id]
    assert first.retry == [session.session_id], "its event is owed"
    owed = await stored(rig, session.session_id)
    assert (owed.status, owed.unreported) == ("completed", True)
    assert owed.completed_event is not None
    assert open_entries(rig) == {session.session_id}

    rig.sink.fail_with = None
    second = await sweeper(rig).sweep()
    assert second.settled == [session.session_id]
    (event,) = completions(rig, session.session_id)
    assert event == owed.completed_event, "the recorded event itself, id and all"
    assert not (await stored(rig, session.session_id)).unreported
    assert open_entries(rig) == set()


async def test_sweepers_racing_over_stored_files_complete_and_report_each_once(
    rig: TusRig,
) -> None:
    sessions = [
        await stored_whole_by(rig, f"killed-{n}", video_bytes(SIZE, seed=10 + n)) for n in range(4)
    ]
    refused = await stored_whole_by(rig, "killed-9", video_bytes(SIZE, seed=9), declared=SIZE - 1)

    reports = await asyncio.gather(
        *(sweeper(rig, f"sweeper-{n}", racing=n).sweep() for n in range(4))
    )

    completed = [session_id for report in reports for session_id in report.completed]
    assert sorted(completed) == sorted(s.session_id for s in sessions), "each by one sweeper"
    assert [session_id for report in reports for session_id in report.refused] == [
        refused.session_id
    ]
    for session in sessions:
        assert len(completions(rig, session.session_id)) == 1
        ended = await stored(rig, session.session_id)
        assert (ended.status, ended.unreported, ended.settling_until) == ("completed", False, None)
    assert len(rig.events(refused.session_id)) == 1
    assert open_entries(rig) == set()
    assert refused.s3_key not in rig.store.objects
