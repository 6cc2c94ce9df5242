"""Every event type goes producer -> real broker -> consumer, CloudEvents headers intact."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ingest.settings import IngestSettings
from schemas import Event, Topics, decode, encode, event_type, headers_dict, topic_for
from tests.samples import SAMPLES, SOURCE


async def test_every_event_type_round_trips_through_the_broker(settings: IngestSettings) -> None:
    topics = Topics(settings.topic_prefix)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        compression_type="lz4",
    )
    await producer.start()
    sent = {}
    try:
        for tag, event in SAMPLES.items():
            encoded = encode(event, source=SOURCE)
            await producer.send_and_wait(
                topic_for(tag, topics),
                value=encoded.value,
                key=encoded.key,
                headers=encoded.headers,
            )
            sent[event.event_id] = (event, encoded)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        *{topic_for(tag, topics) for tag in SAMPLES},
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    received: dict[str, tuple[Event, Any]] = {}
    try:
        async with asyncio.timeout(30):
            while len(received) < len(sent):
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for record in records:
                        decoded = decode(record.value, record.headers)
                        assert decoded is not None
                        received[decoded.event_id] = (decoded, record)
    finally:
        await consumer.stop()

    assert received.keys() == sent.keys()
    for event_id, (event, encoded) in sent.items():
        decoded, record = received[event_id]
        assert decoded == event
        assert record.topic == topic_for(event_type(event), topics)
        assert record.key == encoded.key
        assert list(record.headers) == encoded.headers
        headers = headers_dict(record.headers)
        assert headers["ce_specversion"] == "1.0"
        assert headers["ce_type"] == event_type(event)
        assert headers["ce_id"] == event_id
        assert headers["ce_source"] == SOURCE
        assert headers["content-type"] == "application/json"
