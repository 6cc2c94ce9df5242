"""Upload sessions over the in-memory document store: ownership, expiry, single use, cancel."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from ingest.auth import Principal
from ingest.errors import Forbidden, SessionConflict, SessionExpired, SessionNotFound
from ingest.model import UploadResult
from ingest.pipeline.events import UploadFields, completed_event
from ingest.ports import Versioned
from ingest.usecases.sessions import SessionService
from schemas import Event
from schemas.api import CreateUploadRequest
from tests.fakes import MemoryDocumentStore

ANN = Principal("ann", frozenset())
BOB = Principal("bob", frozenset())
ADMIN = Principal("root", frozenset({"admin"}))


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sessions(clock: Clock) -> SessionService:
    return SessionService(MemoryDocumentStore(), ttl_seconds=3600, clock=clock)


async def _new(sessions: SessionService, who: Principal = ANN) -> str:
    created = await sessions.create(
        who,
        CreateUploadRequest(filename="../../etc/clip é.mp4"),
        protocol="stream",
        file_format="mp4",
    )
    return created.session_id


async def test_a_session_is_visible_to_its_owner_and_admins_only(sessions: SessionService) -> None:
    session_id = await _new(sessions)
    session = await sessions.get_owned(session_id, ANN)
    assert session.status == "active"
    assert session.s3_key == f"dashboard-uploads/ann/{session_id}/clip_e.mp4"
    assert (await sessions.get_owned(session_id, ADMIN)).user_id == "ann"
    with pytest.raises(Forbidden):
        await sessions.get_owned(session_id, BOB)
    with pytest.raises(SessionNotFound):
        await sessions.get_owned("../../escape", ANN)


async def test_expiry_reads_as_expired_and_refuses_a_claim(
    sessions: SessionService, clock: Clock
) -> None:
    session_id = await _new(sessions)
    clock.now += timedelta(hours=1, seconds=1)
    assert (await sessions.get_owned(session_id, ANN)).status == "expired"
    with pytest.raises(SessionExpired):
        await sessions.claim(session_id, ANN, instance_id="a")


async def test_only_one_of_two_concurrent_claims_wins(sessions: SessionService) -> None:
    session_id = await _new(sessions)
    outcomes = await asyncio.gather(
        sessions.claim(session_id, ANN, instance_id="a"),
        sessions.claim(session_id, ANN, instance_id="b"),
        return_exceptions=True,
    )
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
    assert sum(isinstance(o, SessionConflict) for o in outcomes) == 1
    with pytest.raises(SessionConflict):
        await sessions.claim(session_id, ANN, instance_id="c")


async def test_cancel_wins_over_a_later_failure_but_not_over_completion(
    sessions: SessionService,
) -> None:
    session_id = await _new(sessions)
    await sessions.claim(session_id, ANN, instance_id="a")
    await sessions.cancel(session_id, ANN)
    await sessions.cancel(session_id, ANN)  # idempotent
    finished = await sessions.finish(session_id, "failed", message="stopped")
    assert finished.status == "cancelled"

    done_id = await _new(sessions)
    await sessions.claim(done_id, ANN, instance_id="a")
    await sessions.finish(done_id, "completed", message="ok")
    with pytest.raises(SessionConflict):
        await sessions.cancel(done_id, ANN)
    with pytest.raises(Forbidden):
        await sessions.cancel(await _new(sessions), BOB)


async def test_listing_filters_by_user_and_status(sessions: SessionService) -> None:
    first = await _new(sessions)
    second = await _new(sessions)
    await _new(sessions, BOB)
    await sessions.claim(second, ANN, instance_id="a")
    assert {s.session_id for s in await sessions.list_for_user("ann")} == {first, second}
    active = await sessions.list_for_user("ann", status="active")
    assert [s.session_id for s in active] == [first]


class CountingDocuments(MemoryDocumentStore):
    """Counts reads: the completion of a claimed session should need none."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def read(self, key: str) -> Versioned | None:
        self.reads += 1
        return await super().read(key)


def _completion(session_id: str, *, duplicate_of: str | None = None) -> tuple[UploadResult, Event]:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    result = UploadResult(
        video_id="video-1",
        analysis_id="analysis-1",
        size_bytes=2048,
        sha256="ab" * 32,
        format="mp4",
        s3_key=f"dashboard-uploads/ann/{session_id}/clip.mp4",
        etag='"e"',
        parts=1,
        started_at=now,
        completed_at=now,
        duplicate_of=duplicate_of,
    )
    fields = UploadFields(
        upload_id=session_id,
        user_id="ann",
        sequence=2 if duplicate_of else 1,
        occurred_at=now,
        filename="clip.mp4",
        content_type="video/mp4",
        format="mp4",
        protocol="stream",
        priority=5,
        auto_analyze=True,
        dashboard_context=None,
        metadata={},
        s3_bucket="bucket",
        s3_key=result.s3_key,
        total_bytes=None,
    )
    return result, completed_event(result)(fields)


async def test_a_claimed_session_is_recorded_completed_without_reading_it_again(
    clock: Clock,
) -> None:
    documents = CountingDocuments()
    sessions = SessionService(documents, ttl_seconds=3600, clock=clock)
    session_id = await _new(sessions)
    claimed, version = await sessions.claim(session_id, ANN, instance_id="a")
    recorder = sessions.completion_recorder(claimed, version)
    reads = documents.reads

    result, event = _completion(session_id)
    await recorder.record(result, event)
    # Found a duplicate meanwhile: recorded again over its own write, still without a read.
    duplicate, again = _completion(session_id, duplicate_of="video-0")
    await recorder.record(duplicate, again)

    assert documents.reads == reads
    stored = await sessions.get_owned(session_id, ANN)
    assert stored.status == "completed"
    assert stored.instance_id == "a"
    assert stored.result == duplicate
    assert stored.completed_event == again
    assert recorder.session == stored


async def test_a_session_changed_after_its_claim_is_read_again_and_still_completed(
    sessions: SessionService,
) -> None:
    session_id = await _new(sessions)
    claimed, version = await sessions.claim(session_id, ANN, instance_id="a")
    recorder = sessions.completion_recorder(claimed, version)
    # A cancel lands between the claim and the end: the compare-and-swap fails, and the
    # completion (which the cancel cannot undo: the object is stored) is written over it.
    await sessions.cancel(session_id, ANN)

    result, event = _completion(session_id)
    await recorder.record(result, event)

    stored = await sessions.get_owned(session_id, ANN)
    assert stored.status == "completed"
    assert stored.result == result
    assert stored.completed_event == event


async def test_a_session_created_here_is_claimed_without_reading_it(clock: Clock) -> None:
    documents = CountingDocuments()
    sessions = SessionService(documents, ttl_seconds=3600, clock=clock)
    session_id = await _new(sessions)
    with pytest.raises(Forbidden):
        await sessions.claim(session_id, BOB, instance_id="a")
    reads = documents.reads
    # Bob's try used up what this process remembered: Ann's claim reads the document.
    claimed, _ = await sessions.claim(session_id, ANN, instance_id="a")
    assert documents.reads == reads + 1
    assert claimed.status == "uploading"

    other = await _new(sessions)
    reads = documents.reads
    claimed, _ = await sessions.claim(other, ANN, instance_id="a")
    assert documents.reads == reads
    assert (await sessions.get_owned(other, ANN)).status == "uploading"


async def test_a_session_changed_since_its_creation_here_is_judged_as_it_is_now(
    clock: Clock,
) -> None:
    documents = MemoryDocumentStore()
    here = SessionService(documents, ttl_seconds=3600, clock=clock)
    elsewhere = SessionService(documents, ttl_seconds=3600, clock=clock)
    cancelled = await _new(here)
    await elsewhere.cancel(cancelled, ANN)
    with pytest.raises(SessionConflict):
        await here.claim(cancelled, ANN, instance_id="a")
    assert (await here.get_owned(cancelled, ANN)).status == "cancelled"

    taken = await _new(here)
    await elsewhere.claim(taken, ANN, instance_id="b")
    with pytest.raises(SessionConflict):
        await here.claim(taken, ANN, instance_id="a")
    assert (await here.get_owned(taken, ANN)).instance_id == "b"

    # And one created on another instance is read, then claimed.
    remote = await _new(elsewhere)
    claimed, _ = await here.claim(remote, ANN, instance_id="a")
    assert claimed.instance_id == "a"
