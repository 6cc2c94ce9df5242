"""The consumer runtime on the in-process bus: commit points, retries, dead letters, drain, restart.

The runtime is the same code on Kafka; tests/integration/test_consumer_runtime_kafka.py
runs the dead letter and the shutdown on the real broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import pytest

from consumers.runtime import ConsumerRuntime, RetryPolicy, RuntimeOptions
from consumers.runtime import deadletter as dlq
from consumers.runtime.inprocess import consumers_on_bus
from infra.bus import InProcessEventBus
from infra.feeds import TopicPartition
from schemas import Event, Topics, headers_dict
from tests.consumer_apps import ScriptedApp
from tests.samples import SAMPLES

FAST = RuntimeOptions(
    drain_seconds=1.0,
    # Commits are made by the tests (commit_finished) or by the drain, never by the clock.
    commit_interval_seconds=3600,
    poll_seconds=0.05,
    retry=RetryPolicy(attempts=4, base_seconds=0.01, cap_seconds=0.02),
)


def started(event_id: str, upload: str = "upl-1") -> Event:
    sample = SAMPLES["ingest.upload.started"]
    return msgspec.structs.replace(sample, event_id=event_id, upload_id=upload)


def progress(event_id: str, upload: str) -> Event:
    sample = SAMPLES["ingest.upload.progress"]
    return msgspec.structs.replace(sample, event_id=event_id, upload_id=upload)


@asynccontextmanager
async def running(
    bus: InProcessEventBus, app: ScriptedApp, options: RuntimeOptions = FAST
) -> AsyncIterator[ConsumerRuntime]:
    runtime = ConsumerRuntime(app, bus, bus.topics.dlq, options=options)
    member = bus.group_consumer(app.name, *sorted(app.topics), listener=runtime)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(member, stop, end_offsets=member))
    try:
        yield runtime
    finally:
        stop.set()
        async with asyncio.timeout(5):
            await task


async def committed(bus: InProcessEventBus, group: str, topic: str) -> int | None:
    # A member that never joins still reads what its group committed.
    return await bus.group_consumer(group, topic).committed(TopicPartition(topic, 0))


async def until(condition: object) -> None:
    assert callable(condition)
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.fixture
def bus() -> InProcessEventBus:
    return InProcessEventBus(Topics(), source="/ingest/unit")


async def test_out_of_order_completion_commits_only_the_finished_prefix(
    bus: InProcessEventBus,
) -> None:
    app = ScriptedApp("ledger", bus.topics.uploads, max_in_flight=3)
    for name in ("a", "b", "c"):
        app.gates[name] = asyncio.Event()
        await bus.emit(started(name))
    async with running(bus, app) as runtime:
        await until(lambda: sum(app.tries.values()) == 3)
        app.gates["c"].set()
        app.gates["b"].set()
        await app.wait_for(2)
        await runtime.commit_finished()
        assert await committed(bus, "ledger", bus.topics.uploads) is None
        app.gates["a"].set()
        await app.wait_for(3)
        await runtime.commit_finished()
        assert await committed(bus, "ledger", bus.topics.uploads) == 3
    assert sorted(app.handled) == ["a", "b", "c"]


async def test_gaps_left_by_compaction_do_not_hold_the_commit(bus: InProcessEventBus) -> None:
    app = ScriptedApp("live", bus.topics.progress, max_in_flight=2)
    # Offset 1 is compacted away by offset 2 (same upload): offsets 0, 2, 3 remain.
    for event_id, upload in (("p0", "u1"), ("p1", "u2"), ("p2", "u2"), ("p3", "u3")):
        await bus.emit(progress(event_id, upload))
    assert [r.offset for r in bus.records(bus.topics.progress)] == [0, 2, 3]
    async with running(bus, app) as runtime:
        await app.wait_for(3)
        await runtime.commit_finished()
        assert await committed(bus, "live", bus.topics.progress) == 4


async def test_a_retriable_error_is_retried_and_later_records_wait_behind_it(
    bus: InProcessEventBus,
) -> None:
    app = ScriptedApp("ledger", bus.topics.uploads, max_in_flight=4)
    app.fail_retriable["flaky"] = 2
    await bus.emit(started("flaky"))
    await bus.emit(started("after"))
    async with running(bus, app) as runtime:
        await app.wait_for(2)
        await runtime.commit_finished()
        assert await committed(bus, "ledger", bus.topics.uploads) == 2
    assert app.tries["flaky"] == 3
    assert set(app.handled) == {"flaky", "after"}
    assert bus.records(bus.topics.dlq) == []
    assert runtime.metrics.retries.labels("ledger")._value.get() == 2


async def test_a_record_waiting_for_its_retry_holds_back_the_records_after_it(
    bus: InProcessEventBus,
) -> None:
    app = ScriptedApp("ledger", bus.topics.uploads, max_in_flight=1)
    app.fail_retriable["flaky"] = 3
    await bus.emit(started("flaky"))
    await bus.emit(started("after"))
    async with running(bus, app):
        await app.wait_for(2)
    assert app.handled == ["flaky", "after"]


async def test_a_non_retriable_error_dead_letters_the_record_and_the_partition_goes_on(
    bus: InProcessEventBus,
) -> None:
    app = ScriptedApp("ledger", bus.topics.uploads)
    app.poison.add("bad")
    await bus.emit(started("good-1"))
    await bus.emit(started("bad", upload="upl-bad"))
    await bus.emit(started("good-2"))
    async with running(bus, app) as runtime:
        await app.wait_for(2)
        await runtime.commit_finished()
        assert await committed(bus, "ledger", bus.topics.uploads) == 3
    assert app.handled == ["good-1", "good-2"]
    [letter] = bus.records(bus.topics.dlq)
    [original] = [r for r in bus.records(bus.topics.uploads) if r.offset == 1]
    assert letter.key == original.key == b"user-42"
    assert letter.value == original.value
    headers = headers_dict(letter.headers)
    assert headers["ce_id"] == "bad"
    assert headers[dlq.ERROR_TYPE] == "builtins.ValueError"
    assert headers[dlq.ERROR_MESSAGE] == "cannot make sense of bad"
    assert headers[dlq.TOPIC] == bus.topics.uploads
    assert headers[dlq.PARTITION] == "0"
    assert headers[dlq.OFFSET] == "1"
    assert headers[dlq.CONSUMER] == "ledger"
    assert runtime.metrics.dead_letters.labels("ledger")._value.get() == 1


async def test_retries_are_bounded_then_the_record_is_dead_lettered(
    bus: InProcessEventBus,
) -> None:
    app = ScriptedApp("ledger", bus.topics.uploads)
    app.fail_retriable["down"] = 100
    await bus.emit(started("down"))
    await bus.emit(started("next"))
    async with running(bus, app):
        await app.wait_for(1)
    assert app.tries["down"] == FAST.retry.attempts
    [letter] = bus.records(bus.topics.dlq)
    assert headers_dict(letter.headers)[dlq.ATTEMPTS] == str(FAST.retry.attempts)


async def test_invalid_records_are_dead_lettered_and_unknown_types_skipped(
    bus: InProcessEventBus,
) -> None:
    app = ScriptedApp("ledger", bus.topics.uploads)
    future = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"x1"),
        ("ce_type", b"ingest.upload.teleported"),
    ]
    bus.publish(bus.topics.uploads, key=b"k", value=b'{"whatever": 1}', headers=future)
    bus.publish(bus.topics.uploads, key=b"k", value=b"not json", headers=[])
    await bus.emit(started("known"))
    async with running(bus, app) as runtime:
        await app.wait_for(1)
        await runtime.commit_finished()
        assert await committed(bus, "ledger", bus.topics.uploads) == 3
        outcomes = runtime.metrics.records
        assert outcomes.labels("ledger", "skipped")._value.get() == 1
        assert outcomes.labels("ledger", "dead_lettered")._value.get() == 1
    [letter] = bus.records(bus.topics.dlq)
    assert headers_dict(letter.headers)[dlq.ERROR_TYPE] == "schemas.cloudevents.InvalidEvent"


async def test_stop_drains_what_is_in_flight_commits_it_and_leaves_the_rest(
    bus: InProcessEventBus,
) -> None:
    app = ScriptedApp("ledger", bus.topics.uploads, max_in_flight=2)
    app.gates["quick"] = asyncio.Event()
    app.gates["stuck"] = asyncio.Event()
    await bus.emit(started("quick"))
    await bus.emit(started("stuck"))
    async with running(bus, app):
        await until(lambda: sum(app.tries.values()) == 2)
        # Finishes during the drain; "stuck" never does and is cancelled after the grace time.
        asyncio.get_running_loop().call_later(0.1, app.gates["quick"].set)
    assert app.handled == ["quick"]
    assert await committed(bus, "ledger", bus.topics.uploads) == 1
    assert app.revoked == [frozenset({TopicPartition(bus.topics.uploads, 0)})]


async def test_a_restart_resumes_after_the_commit(bus: InProcessEventBus) -> None:
    first = ScriptedApp("ledger", bus.topics.uploads)
    for name in ("one", "two"):
        await bus.emit(started(name))
    async with running(bus, first):
        await first.wait_for(2)
    await bus.emit(started("three"))
    second = ScriptedApp("ledger", bus.topics.uploads)
    async with running(bus, second):
        await second.wait_for(1)
    assert second.handled == ["three"]


async def test_a_full_partition_is_paused_and_resumed(bus: InProcessEventBus) -> None:
    app = ScriptedApp("ledger", bus.topics.uploads, max_in_flight=1)
    app.gates["first"] = asyncio.Event()
    for name in ("first", "b", "c", "d"):
        await bus.emit(started(name))
    async with running(bus, app) as runtime:
        await until(lambda: app.tries["first"] == 1)
        assert TopicPartition(bus.topics.uploads, 0) in runtime._paused
        app.gates["first"].set()
        await app.wait_for(4)
    assert app.handled == ["first", "b", "c", "d"]


async def test_lag_is_end_minus_committed(bus: InProcessEventBus) -> None:
    options = msgspec.structs.replace(FAST, commit_interval_seconds=0.05, lag_interval_seconds=0)
    app = ScriptedApp("ledger", bus.topics.uploads)
    app.gates["b"] = asyncio.Event()
    for name in ("a", "b", "c"):
        await bus.emit(started(name))
    async with running(bus, app, options) as runtime:
        gauge = runtime.metrics.lag.labels("ledger", bus.topics.uploads, "0")
        await until(lambda: gauge._value.get() == 2)
        app.gates["b"].set()
        await until(lambda: gauge._value.get() == 0)


async def test_apps_run_in_process_on_the_bus_and_fail_loudly(bus: InProcessEventBus) -> None:
    app = ScriptedApp("ledger", bus.topics.uploads)
    await bus.emit(started("one"))
    async with consumers_on_bus(bus, [app], options=FAST):
        await app.wait_for(1)
    assert await committed(bus, "ledger", bus.topics.uploads) == 1

    class Broken(ScriptedApp):
        async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
            raise RuntimeError("cannot load state")

    with pytest.raises(RuntimeError, match="cannot load state"):
        async with consumers_on_bus(bus, [Broken("other", bus.topics.uploads)], options=FAST):
            await asyncio.sleep(0.2)
