"""The sweep over resumable (tus) uploads: expired ones are ended and cleaned, a dead
writer's lease does not hold off the expiry, and a cancel it never reported is reported."""

from __future__ import annotations

import msgspec

from infra import layout
from ingest.usecases.tus.state import TusSession, with_state
from schemas import UploadCancelled, UploadFailed
from tests.fakes import video_bytes
from tests.unit.sweep.support import (
    open_entries,
    sweeper,
    terminal_events,
)
from tests.unit.test_tus_support import (
    PART,
    TTL,
    Instance,
    TusRig,
    create,
    send,
)


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
