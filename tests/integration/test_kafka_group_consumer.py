"""KafkaGroupConsumer where Kafka itself fails: every wait bounded, every failure typed.

What it shares with the bus's group consumer is in
tests/contract/test_group_consumer.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from infra.errors import ServiceUnavailable
from infra.feeds import TopicPartition
from infra.kafka.group import KafkaGroupConsumer
from infra.provisioning import ensure_topics
from ingest.settings import IngestSettings
from schemas import Topics
from tests.integration.brokers import wait_until_dead


class Heard:
    def __init__(self) -> None:
        self.revoked: list[frozenset[TopicPartition]] = []

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        return None

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        self.revoked.append(partitions)


async def test_start_against_a_refusing_address_fails_within_its_timeout() -> None:
    member = KafkaGroupConsumer("127.0.0.1:1", "g", "t", start_timeout=2)
    started = time.monotonic()
    async with asyncio.timeout(15):
        with pytest.raises(ServiceUnavailable, match="could not join"):
            await member.start()
    assert time.monotonic() - started < 6
    assert member.assignment() == frozenset()
    with pytest.raises(ServiceUnavailable, match="not started"):
        await member.getmany(max_wait=0)


async def test_start_on_a_topic_nobody_created_fails_within_its_timeout(
    settings: IngestSettings,
) -> None:
    member = KafkaGroupConsumer(
        settings.kafka_bootstrap_servers,
        f"g-{uuid.uuid4().hex[:8]}",
        f"missing-{uuid.uuid4().hex[:8]}",
        start_timeout=3,
    )
    started = time.monotonic()
    async with asyncio.timeout(20):
        with pytest.raises(ServiceUnavailable, match="provisioned"):
            await member.start()
    assert time.monotonic() - started < 8


async def test_commit_and_stop_stay_bounded_when_the_broker_dies(
    doomed_broker: tuple[str, int, str],
) -> None:
    bootstrap, pid, marker = doomed_broker
    topics = Topics("doomed.")
    await ensure_topics(bootstrap, topics)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        sent = await producer.send_and_wait(topics.uploads, key=b"k", value=b"v")
    finally:
        await producer.stop()
    heard = Heard()
    member = KafkaGroupConsumer(
        bootstrap, "doomed-group", topics.uploads, listener=heard, commit_timeout=2, stop_timeout=5
    )
    await member.start()
    async with asyncio.timeout(30):
        while not await member.getmany(max_wait=0.5):
            pass
    held = member.assignment()
    partition = TopicPartition(topics.uploads, sent.partition)

    os.killpg(pid, signal.SIGKILL)
    await asyncio.to_thread(wait_until_dead, pid, marker)

    async with asyncio.timeout(30):
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable) as refused:
            await member.commit({partition: sent.offset + 1})
        assert time.monotonic() - started < 5
        assert refused.value.retriable is True

        started = time.monotonic()
        await member.stop()
        assert time.monotonic() - started < 8
    assert heard.revoked[-1] == held
    assert member.assignment() == frozenset()
    # Nothing left behind retrying the dead broker: no task but this test's own.
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == {asyncio.current_task()}
