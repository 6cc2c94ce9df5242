"""The sweep's housekeeping: heartbeats come back after removal, markers of living instances
stay, an open-session entry without its session goes."""

from __future__ import annotations

from infra import layout
from tests.unit.sweep.support import (
    open_entries,
    streaming_on,
    sweeper,
)
from tests.unit.test_tus_support import (
    DEAD_AFTER,
    Instance,
    TusRig,
    auth,
)


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
