"""The sweep over one-request uploads: what a killed instance or a failed abort leaves is
ended, aborted and reported once, whoever sweeps and however many sweep at once.

A "dead" instance is one whose heartbeat stopped (or never was): the tests claim a
session for it and store parts as its pipeline would have before it was killed.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from infra import layout
from ingest.errors import ServiceUnavailable, SessionExpired, StorageError
from ingest.model import UploadSession
from ingest.usecases.sessions import SessionService
from ingest.usecases.sweep.settle import LATE_SEQUENCE
from schemas import UploadFailed
from schemas.api import CreateUploadRequest
from tests.fakes import video_bytes
from tests.unit.sweep.support import (
    ANN,
    open_entries,
    stored,
    streaming_on,
    sweeper,
    terminal_events,
)
from tests.unit.test_tus_support import (
    DEAD_AFTER,
    PART,
    TTL,
    ClientFactory,
    TusRig,
    create,
    send,
)


async def test_an_upload_of_a_dead_instance_is_failed_aborted_and_reported_once(
    rig: TusRig,
) -> None:
    session = await streaming_on(rig, "killed-1", parts=3)
    report = await sweeper(rig).sweep()

    assert report.failed == [session.session_id]
    ended = await stored(rig, session.session_id)
    assert ended.status == "failed"
    assert ended.error_code == "INTERNAL"
    assert not ended.unreported
    assert rig.store.open_uploads == []
    assert rig.store.parts_held() == 0
    (event,) = terminal_events(rig, session.session_id)
    assert isinstance(event, UploadFailed)
    assert event.error_code == "INTERNAL"
    assert event.sequence == LATE_SEQUENCE
    assert event.bytes_received == 3 * PART
    assert event.s3_key == session.s3_key
    assert open_entries(rig) == set()

    again = await sweeper(rig).sweep()
    assert again.looked_at == 0
    assert len(terminal_events(rig, session.session_id)) == 1


async def test_an_upload_on_a_living_instance_is_left_alone_past_its_ttl(rig: TusRig) -> None:
    alive = rig.heartbeats("alive-1")
    await alive.beat()
    session = await streaming_on(rig, "alive-1")
    rig.clock.advance(TTL + 60)
    await alive.beat()

    report = await sweeper(rig).sweep()
    assert report.failed == []
    assert (await stored(rig, session.session_id)).status == "uploading"
    assert len(rig.store.open_uploads) == 1
    assert open_entries(rig) == {session.session_id}


async def test_an_instance_whose_heartbeat_stopped_is_dead_after_the_threshold(
    rig: TusRig,
) -> None:
    beating = rig.heartbeats("stopped-1")
    await beating.beat()
    session = await streaming_on(rig, "stopped-1")
    rig.clock.advance(DEAD_AFTER - 1)
    assert (await sweeper(rig).sweep()).failed == []
    rig.clock.advance(2)
    assert (await sweeper(rig).sweep()).failed == [session.session_id]


async def test_an_upload_claimed_by_an_earlier_version_is_failed_a_ttl_after_its_claim(
    rig: TusRig,
) -> None:
    session = await streaming_on(rig, "old-version-1")

    def without_heartbeats(current: UploadSession) -> UploadSession:
        return msgspec.structs.replace(current, streamer_beats=False)

    sessions = SessionService(rig.documents, ttl_seconds=TTL, clock=rig.clock)
    await sessions.mutate(session.session_id, without_heartbeats)
    rig.clock.advance(TTL - 1)
    assert (await sweeper(rig).sweep()).failed == [], "no heartbeat is not death for it"
    rig.clock.advance(2)
    assert (await sweeper(rig).sweep()).failed == [session.session_id]
    assert rig.store.parts_held() == 0


async def test_an_unused_session_past_its_ttl_is_expired_without_an_event(rig: TusRig) -> None:
    sessions = SessionService(rig.documents, ttl_seconds=TTL, clock=rig.clock)
    session = await sessions.create(
        ANN, CreateUploadRequest(filename="clip.mp4"), protocol="stream", file_format="mp4"
    )
    assert (await sweeper(rig).sweep()).expired == []
    rig.clock.advance(TTL)
    report = await sweeper(rig).sweep()
    assert report.expired == [session.session_id]
    assert (await stored(rig, session.session_id)).status == "expired"
    assert rig.events(session.session_id) == []
    assert open_entries(rig) == set()
    with pytest.raises(SessionExpired):
        await sessions.claim(session.session_id, ANN, instance_id="late")


async def test_an_abort_refused_while_s3_is_down_is_retried_until_it_succeeds(
    rig: TusRig,
) -> None:
    session = await streaming_on(rig, "killed-2")
    rig.store.fail_abort = StorageError("S3 answered 503")

    first = await sweeper(rig).sweep()
    assert first.failed == [session.session_id]
    assert first.retry == [session.session_id]
    ended = await stored(rig, session.session_id)
    assert ended.status == "failed"
    assert ended.unreported, "the abort is still owed"
    assert rig.store.parts_held() == 2
    assert terminal_events(rig, session.session_id) == [], "reported only once nothing is left"
    assert open_entries(rig) == {session.session_id}

    second = await sweeper(rig).sweep()
    assert second.retry == [session.session_id], "still down: still owed, never forgotten"

    rig.store.fail_abort = None
    third = await sweeper(rig).sweep()
    assert third.settled == [session.session_id]
    assert rig.store.parts_held() == 0
    assert len(terminal_events(rig, session.session_id)) == 1
    assert not (await stored(rig, session.session_id)).unreported
    assert open_entries(rig) == set()


async def test_an_event_bus_down_keeps_the_report_owed(rig: TusRig) -> None:
    session = await streaming_on(rig, "killed-3")
    rig.sink.fail_with = ServiceUnavailable("the broker does not answer")
    assert (await sweeper(rig).sweep()).retry == [session.session_id]
    assert rig.store.parts_held() == 0, "aborted already; the event is what is owed"
    rig.sink.fail_with = None
    assert (await sweeper(rig).sweep()).settled == [session.session_id]
    assert len(terminal_events(rig, session.session_id)) == 1


async def test_an_ended_upload_whose_own_abort_failed_has_its_parts_aborted(rig: TusRig) -> None:
    alive = rig.heartbeats("alive-2")
    await alive.beat()
    session = await streaming_on(rig, "alive-2")
    sessions = SessionService(rig.documents, ttl_seconds=TTL, clock=rig.clock)
    # Its pipeline reported the failure but could not abort (S3 was down then).
    await sessions.finish(session.session_id, "failed", error_code="STORAGE_ERROR")

    report = await sweeper(rig).sweep()
    assert report.aborted == [session.session_id]
    assert rig.store.parts_held() == 0
    assert rig.events(session.session_id) == [], "its streamer reported it already"
    assert open_entries(rig) == set()


async def test_two_sweepers_at_once_end_and_report_each_upload_once(
    rig: TusRig, aiohttp_client: ClientFactory
) -> None:
    sessions = [await streaming_on(rig, f"killed-{n}") for n in range(6)]
    node = await rig.instance(aiohttp_client, "front")
    resumable = []
    for seed in range(3):
        upload_id = await create(node.client, 3 * PART)
        await send(node.client, upload_id, 0, video_bytes(PART + 7, seed=seed))
        resumable.append(upload_id)
    rig.clock.advance(TTL + 1)  # the tus uploads expire; a one-request upload never does

    reports = await asyncio.gather(
        sweeper(rig, "sweeper-a", racing=1).sweep(),
        sweeper(rig, "sweeper-b", racing=2).sweep(),
        sweeper(rig, "sweeper-c", racing=3).sweep(),
    )

    failed = [session_id for report in reports for session_id in report.failed]
    assert sorted(failed) == sorted(s.session_id for s in sessions), "each failed by one sweeper"
    expired = [session_id for report in reports for session_id in report.expired]
    assert sorted(expired) == sorted(resumable), "each expired by one sweeper"
    for session in sessions:
        assert len(terminal_events(rig, session.session_id)) == 1
        assert (await stored(rig, session.session_id)).status == "failed"
    for upload_id in resumable:
        (timeout,) = terminal_events(rig, upload_id)
        assert isinstance(timeout, UploadFailed)
        assert timeout.error_code == "TIMEOUT"
        assert (await rig.session(upload_id)).state.cleaned
    assert rig.store.parts_held() == 0
    assert not [key for key in rig.store.objects if key.startswith(layout.TUS_PREFIX)]
    assert open_entries(rig) == set()
