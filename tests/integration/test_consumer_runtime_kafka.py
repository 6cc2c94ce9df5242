"""The consumer runtime on the real Kafka, through the `ingest consume` runner.

A poison record is dead-lettered with its error in the headers while the
records after it are handled; SIGTERM drains, commits and leaves the group;
health and metrics answer on the consumer's own port.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid

import aiohttp
import msgspec
from aiokafka import AIOKafkaConsumer

from cli.consume import run_consumer
from consumers.runtime import deadletter as dlq
from consumers.runtime.settings import ConsumerSettings
from deploy.stack.process import free_port
from infra.feeds import TopicPartition
from infra.kafka.group import KafkaGroupConsumer
from infra.kafka.sink import KafkaEventSink
from ingest.settings import IngestSettings
from schemas import Event, Topics, headers_dict
from tests.consumer_apps import ScriptedApp
from tests.samples import SAMPLES


def started(event_id: str) -> Event:
    return msgspec.structs.replace(SAMPLES["ingest.upload.started"], event_id=event_id)


def consumer_settings(settings: IngestSettings) -> ConsumerSettings:
    return ConsumerSettings(
        kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
        topic_prefix=settings.topic_prefix,
        metrics_host="127.0.0.1",
        metrics_port=free_port(),
        drain_seconds=5,
        commit_interval_seconds=0.5,
        instance_id="test",
    )


async def emit(settings: IngestSettings, *events: Event) -> None:
    topics = Topics(settings.topic_prefix)
    async with KafkaEventSink(settings.kafka_bootstrap_servers, topics, source="/test") as sink:
        for event in events:
            await sink.emit(event)


async def dead_letters(settings: IngestSettings, count: int) -> list[object]:
    reader = AIOKafkaConsumer(
        Topics(settings.topic_prefix).dlq,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await reader.start()
    found: list[object] = []
    try:
        async with asyncio.timeout(30):
            while len(found) < count:
                for records in (await reader.getmany(timeout_ms=500)).values():
                    found.extend(records)
    finally:
        await reader.stop()
    return found


async def group_committed(
    settings: IngestSettings, group: str
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """What `group` committed, and where those partitions end."""
    uploads = Topics(settings.topic_prefix).uploads
    member = KafkaGroupConsumer(settings.kafka_bootstrap_servers, group, uploads)
    await member.start()
    try:
        committed = {
            partition: offset
            for partition in member.assignment()
            if (offset := await member.committed(partition)) is not None
        }
        return committed, dict(await member.end_offsets(frozenset(committed)))
    finally:
        await member.stop()


async def test_a_poison_record_is_dead_lettered_and_later_records_are_handled(
    settings: IngestSettings,
) -> None:
    topics = Topics(settings.topic_prefix)
    app = ScriptedApp(f"runtime-{uuid.uuid4().hex[:8]}", topics.uploads)
    app.poison.add("poison")
    await emit(settings, started("before"), started("poison"), started("after"))
    config = consumer_settings(settings)
    stop = asyncio.Event()
    running = asyncio.create_task(run_consumer(app, config, stop=stop))
    try:
        await app.wait_for_within(2, seconds=60)
        assert app.handled == ["before", "after"]
        [letter] = await dead_letters(settings, 1)
        headers = headers_dict(letter.headers)  # type: ignore[attr-defined]
        assert headers["ce_id"] == "poison"
        assert headers[dlq.ERROR_TYPE] == "builtins.ValueError"
        assert headers[dlq.ERROR_MESSAGE] == "cannot make sense of poison"
        assert headers[dlq.TOPIC] == topics.uploads
        assert headers[dlq.CONSUMER] == app.name
        assert letter.key == b"user-42"  # type: ignore[attr-defined]
        base = f"http://127.0.0.1:{config.metrics_port}"
        async with aiohttp.ClientSession() as http:
            for path in ("/healthz", "/readyz"):
                async with http.get(base + path) as answer:
                    assert answer.status == 200, path
            async with http.get(base + "/metrics") as answer:
                text = await answer.text()
        assert f'consumer_dead_letters_total{{consumer="{app.name}"}} 1.0' in text
        assert f'consumer_records_total{{consumer="{app.name}",outcome="handled"}} 2.0' in text
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await running
    committed, ends = await group_committed(settings, app.name)
    assert committed == ends
    assert list(committed.values()) == [int(headers[dlq.OFFSET]) + 2]


async def test_sigterm_drains_what_is_in_flight_commits_and_leaves(
    settings: IngestSettings,
) -> None:
    topics = Topics(settings.topic_prefix)
    app = ScriptedApp(f"runtime-{uuid.uuid4().hex[:8]}", topics.uploads)
    app.gates["slow"] = asyncio.Event()
    await emit(settings, started("slow"))
    running = asyncio.create_task(run_consumer(app, consumer_settings(settings)))
    async with asyncio.timeout(60):
        while app.tries["slow"] == 0:
            await asyncio.sleep(0.05)
    os.kill(os.getpid(), signal.SIGTERM)
    # In flight when the signal came: it finishes within the grace time and is committed.
    asyncio.get_running_loop().call_later(0.3, app.gates["slow"].set)
    async with asyncio.timeout(30):
        await running
    # The module's topic also holds the other test's records, handled before this one.
    assert app.handled[-1] == "slow"
    assert app.revoked, "the runtime leaves the group through on_revoked"
    committed, ends = await group_committed(settings, app.name)
    assert committed
    assert committed == ends
