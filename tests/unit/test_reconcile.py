"""The reconciler against in-memory sessions, a scripted topic and a recording sink; and the
pipeline recording the completed event before it is sent, so the reconciler has it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from ingest.errors import EventDeliveryError, StorageError
from ingest.model import UploadResult, UploadSession
from ingest.ports import TerminalEventsSeen
from ingest.usecases.reconcile import CLOCK_SKEW, Reconciler
from ingest.usecases.sessions import SessionService
from schemas import Event, UploadCompleted, UploadStarted
from tests.fakes import (
    MemoryDocumentStore,
    MemoryObjectStore,
    RecordingEventSink,
    ScriptedBody,
    video_bytes,
)
from tests.samples import SAMPLES
from tests.unit.pipeline_rig import PART, PipelineRig, make_target

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
SAMPLE = SAMPLES["ingest.upload.completed"]
assert isinstance(SAMPLE, UploadCompleted)


class ScriptedHistory:
    """The uploads topic as a list of events; remembers the `since` it was asked for."""

    def __init__(self, *events: UploadCompleted) -> None:
        self.events = list(events)
        self.asked: list[datetime | None] = []

    async def terminal_events(self, since: datetime | None) -> TerminalEventsSeen:
        self.asked.append(since)
        return TerminalEventsSeen(
            event_ids=frozenset(e.event_id for e in self.events),
            completed_uploads=frozenset(e.upload_id for e in self.events),
            records=len(self.events),
        )


def _key(upload_id: str) -> str:
    return f"dashboard-uploads/u/{upload_id}/clip.mp4"


def _completed(upload_id: str, at: datetime) -> UploadCompleted:
    assert isinstance(SAMPLE, UploadCompleted)
    return msgspec.structs.replace(
        SAMPLE,
        upload_id=upload_id,
        event_id=f"event-{upload_id}",
        occurred_at=at,
        completed_at=at,
        duplicate_of=None,
        s3_key=_key(upload_id),
        size_bytes=10,
    )


def _bucket(*upload_ids: str) -> MemoryObjectStore:
    """A bucket holding the 10-byte object of each of these uploads."""
    store = MemoryObjectStore()
    for upload_id in upload_ids:
        store.objects[_key(upload_id)] = b"0123456789"
    return store


def _session(
    upload_id: str,
    event: UploadCompleted | None,
    *,
    status: str = "completed",
    at: datetime = T0,
    answered_duplicate: bool = False,
) -> UploadSession:
    result = UploadResult(
        video_id=f"video-{upload_id}",
        analysis_id="analysis",
        size_bytes=10,
        sha256="0" * 64,
        format="mp4",
        s3_key=_key(upload_id),
        etag=None,
        parts=1,
        started_at=at,
        completed_at=at,
        duplicate_of=f"video-{upload_id}" if answered_duplicate else None,
    )
    return UploadSession(
        session_id=upload_id,
        user_id="u",
        filename="clip.mp4",
        expected_file_size=None,
        file_format="mp4",
        file_hash=None,
        auto_analyze=True,
        priority=5,
        metadata={},
        dashboard_context=None,
        protocol="stream",
        s3_key=result.s3_key,
        created_at=at,
        expires_at=at + timedelta(hours=1),
        status=status,  # type: ignore[arg-type]
        result=result if status == "completed" else None,
        completed_event=event,
    )


async def _stored(*sessions: UploadSession) -> SessionService:
    service = SessionService(MemoryDocumentStore(), ttl_seconds=3600)
    for session in sessions:
        await service.store_new(session)
    return service


def _id(n: int) -> str:
    return f"{n:032x}"


async def test_only_the_completions_missing_from_the_topic_are_sent_again_as_they_were() -> None:
    present = _completed(_id(1), T0)
    late, early = _completed(_id(2), T0 + timedelta(seconds=5)), _completed(_id(3), T0)
    sessions = await _stored(
        _session(_id(1), present),
        _session(_id(2), late),
        _session(_id(3), early),
        _session(_id(4), None, status="failed"),
        _session(_id(5), None, answered_duplicate=True),
    )
    sink = RecordingEventSink()

    objects = _bucket(_id(1), _id(2), _id(3))
    report = await Reconciler(sessions, ScriptedHistory(present), sink, objects).run()

    # The very events recorded, oldest first (each user's order is kept).
    assert sink.events == [early, late]
    assert report.checked == 3
    assert report.present == 1
    assert report.reemitted == [_id(3), _id(2)]
    assert report.unrecoverable == []


async def test_a_second_pass_over_what_the_first_sent_sends_nothing() -> None:
    event = _completed(_id(1), T0)
    sessions = await _stored(_session(_id(1), event))
    history, sink = ScriptedHistory(), RecordingEventSink()

    await Reconciler(sessions, history, sink, _bucket(_id(1))).run()
    history.events.extend(e for e in sink.events if isinstance(e, UploadCompleted))
    again = await Reconciler(sessions, history, sink, _bucket(_id(1))).run()

    assert len(sink.events) == 1
    assert again.present == 1
    assert again.reemitted == []


async def test_documents_without_their_event_are_matched_by_upload_and_never_invented() -> None:
    on_topic = _completed(_id(1), T0)
    sessions = await _stored(_session(_id(1), None), _session(_id(2), None))
    sink = RecordingEventSink()

    report = await Reconciler(sessions, ScriptedHistory(on_topic), sink, _bucket()).run()

    assert report.checked == 2
    assert report.present == 1
    assert report.unrecoverable == [_id(2)]
    assert sink.events == []


async def test_since_compares_only_later_completions_against_a_topic_read_from_before() -> None:
    old, new = _completed(_id(1), T0), _completed(_id(2), T0 + timedelta(hours=2))
    sessions = await _stored(_session(_id(1), old), _session(_id(2), new))
    history, sink = ScriptedHistory(), RecordingEventSink()
    since = T0 + timedelta(hours=1)

    report = await Reconciler(sessions, history, sink, _bucket(_id(1), _id(2))).run(since)

    assert history.asked == [since - CLOCK_SKEW]
    assert report.checked == 1
    assert sink.events == [new]


async def test_a_completion_whose_object_is_gone_or_different_is_reported_not_sent() -> None:
    gone, changed, intact = (_completed(_id(n), T0) for n in (1, 2, 3))
    sessions = await _stored(*(_session(e.upload_id, e) for e in (gone, changed, intact)))
    objects = _bucket(_id(3))
    objects.objects[_key(_id(2))] = b"not the ten bytes recorded"
    sink = RecordingEventSink()

    report = await Reconciler(sessions, ScriptedHistory(), sink, objects).run()

    assert sink.events == [intact]
    assert sorted(report.objects_missing) == [_id(1), _id(2)]


async def test_each_users_completions_are_sent_in_order_and_a_failure_stops_the_pass() -> None:
    events = [
        msgspec.structs.replace(
            _completed(_id(n), T0 + timedelta(seconds=10 - n)), user_id=f"user-{n % 3}"
        )
        for n in range(1, 10)
    ]
    sessions = await _stored(*(_session(e.upload_id, e) for e in events))
    objects = _bucket(*(e.upload_id for e in events))
    sink = RecordingEventSink()

    report = await Reconciler(sessions, ScriptedHistory(), sink, objects).run()

    assert sorted(report.reemitted) == sorted(e.upload_id for e in events)
    for user in ("user-0", "user-1", "user-2"):
        sent = [e for e in sink.of_type(UploadCompleted) if e.user_id == user]
        assert sent == sorted((e for e in events if e.user_id == user), key=lambda e: e.occurred_at)

    sink.fail_with = EventDeliveryError("the broker is down")
    with pytest.raises(EventDeliveryError):
        await Reconciler(sessions, ScriptedHistory(), sink, objects).run()


async def test_the_pipeline_records_the_completed_event_before_sending_that_very_event() -> None:
    rig = PipelineRig()
    recorded: list[tuple[UploadResult, Event, int]] = []

    async def record(result: UploadResult, event: Event) -> None:
        recorded.append((result, event, len(rig.sink.events)))

    data = video_bytes(3 * PART + 5)
    result = await rig.run(make_target(), ScriptedBody(data, 50), record_completion=record)

    [(seen_result, event, sent_before)] = recorded
    assert seen_result == result
    assert isinstance(event, UploadCompleted)
    assert event.sha256 == result.sha256
    assert rig.sink.events[-1] is event
    assert sent_before == len(rig.sink.events) - 1


async def test_a_completion_that_cannot_be_recorded_is_not_sent() -> None:
    rig = PipelineRig()

    async def record(result: UploadResult, event: Event) -> None:
        raise StorageError("S3 refused the session document")

    with pytest.raises(StorageError):
        await rig.run(
            make_target(), ScriptedBody(video_bytes(3 * PART), 50), record_completion=record
        )

    assert rig.sink.of_type(UploadCompleted) == []
    assert rig.sink.of_type(UploadStarted) != []
