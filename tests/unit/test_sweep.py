"""The sweep over the in-memory fakes: what a killed instance or a failed abort leaves is ended,
aborted and reported once, whoever sweeps and however many sweep at once.

A "dead" instance is one whose heartbeat stopped (or never was): the tests claim a
session for it and store parts as its pipeline would have before it was killed.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import msgspec
import pytest

from infra import layout
from ingest.auth import Principal
from ingest.errors import ServiceUnavailable, SessionExpired, StorageError
from ingest.model import UploadSession
from ingest.pipeline.hashing import part_checksum
from ingest.ports import Versioned
from ingest.usecases.sessions import SessionService
from ingest.usecases.sweep.settle import LATE_SEQUENCE
from ingest.usecases.sweep.sweeper import Sweeper
from ingest.usecases.tus.state import TusSession, with_state
from schemas import UploadCancelled, UploadFailed
from schemas.api import CreateUploadRequest
from tests.fakes import MemoryDocumentStore, video_bytes
from tests.unit.test_tus_support import (
    DEAD_AFTER,
    PART,
    TTL,
    ClientFactory,
    Instance,
    TusRig,
    auth,
    create,
    send,
)

ANN = Principal("ann", frozenset())


class RacingDocuments:
    """The rig's document store, each call delayed by a random moment so that concurrent
    sweepers interleave between their reads and their compare-and-swaps."""

    def __init__(self, inner: MemoryDocumentStore, seed: int) -> None:
        self._inner = inner
        self._random = random.Random(seed)

    async def _pause(self) -> None:
        await asyncio.sleep(self._random.uniform(0, 0.003))

    async def create(self, key: str, data: bytes) -> str:
        await self._pause()
        return await self._inner.create(key, data)

    async def read(self, key: str) -> Versioned | None:
        await self._pause()
        return await self._inner.read(key)

    async def replace(self, key: str, data: bytes, *, version: str) -> str:
        await self._pause()
        return await self._inner.replace(key, data, version=version)

    async def list_keys(self, prefix: str) -> list[str]:
        await self._pause()
        return await self._inner.list_keys(prefix)

    async def delete(self, key: str) -> None:
        await self._pause()
        await self._inner.delete(key)


@pytest.fixture
def rig() -> TusRig:
    return TusRig()


def sweeper(rig: TusRig, name: str = "sweeper", *, racing: int | None = None) -> Sweeper:
    """A sweeper of an instance `name` over the rig's shared state."""
    from ingest.pipeline.config import PipelineConfig
    from ingest.usecases.sweep.complete import Completer
    from ingest.usecases.sweep.settle import Settler
    from ingest.usecases.tus.lifecycle import Lifecycle
    from ingest.usecases.tus.state import TusSessions

    documents: Any = rig.documents if racing is None else RacingDocuments(rig.documents, racing)
    sessions = SessionService(documents, ttl_seconds=TTL, clock=rig.clock)
    pipeline = PipelineConfig(part_size=PART, parts_in_flight=2, progress_interval=3600.0)
    tus = rig.services(name).tus
    assert tus is not None
    from ingest.usecases.duplicates import DuplicateIndex
    from ingest.usecases.instances import Heartbeats

    return Sweeper(
        documents=documents,
        sessions=sessions,
        heartbeats=Heartbeats(
            documents, instance_id=name, dead_after_seconds=DEAD_AFTER, clock=rig.clock
        ),
        settler=Settler(sessions=sessions, store=rig.store, sink=rig.sink, pipeline=pipeline),
        completer=Completer(
            sessions=sessions,
            documents=documents,
            store=rig.store,
            sink=rig.sink,
            pipeline=pipeline,
        ),
        tus=Lifecycle(
            TusSessions(sessions, documents, rig.clock),
            rig.store,
            rig.sink,
            DuplicateIndex(documents),
            pipeline,
            tus.limits,
            rig.clock,
        ),
        clock=rig.clock,
    )


async def streaming_on(rig: TusRig, instance_id: str, *, parts: int = 2) -> UploadSession:
    """A session claimed by `instance_id`, with `parts` parts stored: what a streamer killed
    mid-upload leaves behind."""
    sessions = SessionService(rig.documents, ttl_seconds=TTL, clock=rig.clock)
    session = await sessions.create(
        ANN,
        CreateUploadRequest(filename="clip.mp4", expected_file_size=10 * PART),
        protocol="stream",
        file_format="mp4",
    )
    claimed, _ = await sessions.claim(session.session_id, ANN, instance_id=instance_id)
    upload = await rig.store.start_multipart(claimed.s3_key, content_type=None, metadata={})
    for number in range(1, parts + 1):
        data = video_bytes(PART, seed=number)
        await upload.upload_part(number, data, part_checksum(data))
    return claimed


async def stored(rig: TusRig, session_id: str) -> UploadSession:
    sessions = SessionService(rig.documents, ttl_seconds=TTL, clock=rig.clock)
    session, _ = await sessions.load(session_id)
    return session


def open_entries(rig: TusRig) -> set[str]:
    prefix = layout.open_sessions_prefix()
    return {k[len(prefix) :] for k in rig.documents.snapshot() if k.startswith(prefix)}


def terminal_events(rig: TusRig, upload_id: str) -> list[UploadFailed | UploadCancelled]:
    return [e for e in rig.events(upload_id) if isinstance(e, UploadFailed | UploadCancelled)]


# One-request uploads.


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


# DELETE.


@pytest.fixture
async def node(rig: TusRig, aiohttp_client: ClientFactory) -> Instance:
    node = await rig.instance(aiohttp_client, "front")
    await rig.heartbeats("front").beat()
    return node


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


# Resumable (tus) uploads.


async def test_an_expired_tus_upload_nobody_touches_is_expired_and_cleaned(
    rig: TusRig, node: Instance
) -> None:
    data = video_bytes(3 * PART, seed=9)
    upload_id = await create(node.client, len(data))
    await send(node.client, upload_id, 0, data[: 2 * PART + 100])
    assert rig.store.parts_held() == 2
    tails = f"{layout.TUS_PREFIX}{upload_id}/"
    assert [key for key in rig.store.objects if key.startswith(tails)], "its tail is kept"

    assert (await sweeper(rig).sweep()).expired == []
    rig.clock.advance(TTL + 1)
    report = await sweeper(rig).sweep()
    assert report.expired == [upload_id]
    assert report.tus_cleaned == [upload_id]
    session = await rig.session(upload_id)
    assert session.status == "expired"
    assert session.state.cleaned
    assert rig.store.parts_held() == 0
    assert not [key for key in rig.store.objects if key.startswith(tails)]
    (event,) = terminal_events(rig, upload_id)
    assert isinstance(event, UploadFailed)
    assert event.error_code == "TIMEOUT"
    assert open_entries(rig) == set()


async def test_a_tus_lease_of_a_dead_instance_does_not_hold_off_the_expiry(
    rig: TusRig, node: Instance
) -> None:
    upload_id = await create(node.client, 3 * PART)
    await send(node.client, upload_id, 0, video_bytes(PART + 10))

    def leased(session: TusSession) -> TusSession:
        from datetime import timedelta

        from ingest.usecases.tus.state import TusLease

        lease = TusLease(
            owner="gone", instance_id="killed-6", expires_at=rig.clock() + timedelta(hours=2)
        )
        return with_state(session, lease=lease)

    await node.tus.sessions.mutate(upload_id, leased)
    rig.clock.advance(TTL + 1)
    report = await sweeper(rig).sweep()
    assert report.expired == [upload_id]
    assert rig.store.parts_held() == 0
    assert (await rig.session(upload_id)).state.lease is None


async def test_a_tus_cancel_its_dead_writer_never_reported_is_reported(
    rig: TusRig, node: Instance
) -> None:
    upload_id = await create(node.client, 3 * PART)
    await send(node.client, upload_id, 0, video_bytes(PART + 10))

    def writing_then_cancelled(session: TusSession) -> TusSession:
        from datetime import timedelta

        from ingest.usecases.tus.state import TusLease

        lease = TusLease(
            owner="gone", instance_id="killed-7", expires_at=rig.clock() + timedelta(seconds=30)
        )
        cancelled = msgspec.structs.replace(session, status="cancelled", message="by the user")
        return with_state(cancelled, lease=lease)

    await node.tus.sessions.mutate(upload_id, writing_then_cancelled)
    report = await sweeper(rig).sweep()
    assert report.settled == [upload_id]
    assert report.tus_cleaned == [upload_id] or (await rig.session(upload_id)).state.cleaned
    (event,) = terminal_events(rig, upload_id)
    assert isinstance(event, UploadCancelled)
    assert rig.store.parts_held() == 0
    assert open_entries(rig) == set()


# Heartbeats and markers.


async def test_heartbeats_come_back_after_a_sweep_removed_them(rig: TusRig) -> None:
    paused = rig.heartbeats("paused-1")
    await paused.beat()
    rig.clock.advance(10 * DEAD_AFTER)
    report = await sweeper(rig).sweep()
    assert report.heartbeats_removed == 1
    assert layout.instance_heartbeat("paused-1") not in rig.documents.snapshot()
    await paused.beat()
    assert await rig.heartbeats("other").is_alive("paused-1")


async def test_markers_of_living_instances_are_kept(rig: TusRig, node: Instance) -> None:
    streamer = rig.heartbeats("alive-3")
    await streamer.beat()
    session = await streaming_on(rig, "alive-3")
    await node.client.delete(f"/v1/uploads/{session.session_id}", headers=auth())
    report = await sweeper(rig).sweep()
    assert report.markers_removed == 0
    assert layout.cancel_marker("alive-3", session.session_id) in rig.documents.snapshot()
    assert rig.store.parts_held() == 2, "the living streamer aborts and reports it itself"
    assert open_entries(rig) == {session.session_id}


async def test_an_entry_without_its_session_is_removed(rig: TusRig) -> None:
    await rig.documents.create(layout.open_session_entry("0" * 32), b"")
    report = await sweeper(rig).sweep()
    assert report.closed == 1
    assert open_entries(rig) == set()
