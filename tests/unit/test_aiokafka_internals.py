"""The private parts of aiokafka that `infra/kafka/internals.py` uses keep the shape it expects.

Real AIOKafkaProducer and AIOKafkaConsumer objects, built inside a running
loop the way the service builds them, never started: no broker is needed. An
upgrade of aiokafka that renames or reshapes any of these attributes fails
here, by name, before it fails in production.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.cluster import ClusterMetadata
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.errors import KafkaTimeoutError

from infra.kafka import internals
from infra.kafka.sink import KafkaEventSink
from schemas import Topics

NOWHERE = "127.0.0.1:1"


@pytest.fixture
async def producer() -> AsyncIterator[Any]:
    """A producer configured exactly as the event sink configures its own."""
    built = KafkaEventSink(NOWHERE, Topics(), source="/unit")._new_producer()
    yield built
    await built.stop()


@pytest.fixture
async def consumer() -> AsyncIterator[Any]:
    built = AIOKafkaConsumer(
        bootstrap_servers=NOWHERE,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    yield built
    await built.stop()


def test_the_sender_has_a_task_slot_and_an_awaitable_close(producer: Any) -> None:
    sender = producer._sender
    # sender_stopped reads sender_task: None before start, then an asyncio.Task.
    assert "sender_task" in dir(sender)
    assert sender.sender_task is None
    assert inspect.iscoroutinefunction(sender.close)
    assert internals.sender_stopped(producer) is False


async def test_a_started_sender_has_a_task_whose_end_sender_stopped_sees() -> None:
    # Only an idempotent producer needs a broker to start its sender; this one does not.
    plain = AIOKafkaProducer(bootstrap_servers=NOWHERE, enable_idempotence=False, acks=1)
    try:
        await plain._sender.start()
        await asyncio.sleep(0)  # let the routine begin: it ends quietly when cancelled
        assert isinstance(plain._sender.sender_task, asyncio.Task)
        assert internals.sender_stopped(plain) is False
        await plain._sender.close()
        assert internals.sender_stopped(plain) is True
    finally:
        await plain.stop()


async def test_the_accumulator_holds_batches_that_abandon_pending_can_fail(producer: Any) -> None:
    accumulator = producer._message_accumulator
    assert isinstance(accumulator._batches, dict)
    assert isinstance(accumulator._pending_batches, set)
    assert callable(accumulator.fail_all)
    assert list(inspect.signature(accumulator.fail_all).parameters) == ["exception"]

    delivery = await accumulator.add_message(TopicPartition("t", 0), b"key", b"value", timeout=1)
    [queue] = accumulator._batches.values()
    assert isinstance(queue, collections.deque)
    [batch] = queue
    assert isinstance(batch._drain_waiter, asyncio.Future)
    assert not batch._drain_waiter.done()

    await internals.abandon_pending(producer, 1.0)

    with pytest.raises(KafkaTimeoutError, match="stopped before the broker took the record"):
        await delivery
    assert batch._drain_waiter.done()


def test_the_client_of_a_consumer_fetches_every_topics_metadata(consumer: Any) -> None:
    fetch = consumer._client.fetch_all_metadata
    assert inspect.iscoroutinefunction(fetch)
    assert not [
        parameter
        for parameter in inspect.signature(fetch).parameters.values()
        if parameter.default is inspect.Parameter.empty
    ]
    # cluster_metadata's callers ask what it returns for a topic's partition numbers.
    assert isinstance(consumer._client.cluster, ClusterMetadata)
    assert consumer._client.cluster.partitions_for_topic("unknown") is None


async def test_what_stop_consumer_finishes_is_where_it_looks(consumer: Any) -> None:
    # The consumer builds its fetcher on start; before, the slot is there and empty.
    assert "_fetcher" in vars(consumer)
    assert consumer._fetcher is None
    fetcher = Fetcher(consumer._client, consumer._subscription)
    try:
        assert isinstance(fetcher._pending_tasks, set)
    finally:
        await fetcher.close()
    assert inspect.iscoroutinefunction(consumer._client.close)
    # A stop that never started anything ends quietly through the same path.
    await internals.stop_consumer(consumer, 1.0)
