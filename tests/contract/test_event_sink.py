"""EventSink: the in-process bus and Kafka publish the same records, read back alike."""

from __future__ import annotations

import uuid

import msgspec

from ingest.ports import EventSink
from schemas import (
    Event,
    UploadCompleted,
    UploadProgress,
    UploadStarted,
    decode,
    encode,
    event_type,
    headers_dict,
    key_of,
    topic_for,
)
from tests.contract.conftest import SOURCE, RecordReader
from tests.samples import SAMPLES


def unique(event: Event, suffix: str) -> Event:
    """The sample with ids of this test, so tests sharing a module's topics never see each other's.

    One suffix per test: one user's records share a key, hence a Kafka partition and an order.
    """
    changes: dict[str, str] = {"event_id": uuid.uuid4().hex, "user_id": f"{event.user_id}-{suffix}"}
    if hasattr(event, "upload_id"):
        changes["upload_id"] = f"upload-{suffix}"
    return msgspec.structs.replace(event, **changes)


async def test_every_event_type_round_trips_with_its_cloudevents_headers_and_key(
    event_sink_and_reader: tuple[EventSink, RecordReader],
) -> None:
    sink, reader = event_sink_and_reader
    suffix = uuid.uuid4().hex[:8]
    events = [unique(sample, suffix) for sample in SAMPLES.values()]
    for event in events:
        await sink.emit(event)

    by_topic: dict[str, list[Event]] = {}
    for event in events:
        by_topic.setdefault(topic_for(event_type(event), reader.topics), []).append(event)
    for topic, sent in by_topic.items():
        received = await reader.read(topic, len(sent))
        for event, record in zip(sent, received, strict=True):
            expected = encode(event, source=SOURCE)
            assert record.topic == topic
            assert record.key == key_of(event) == expected.key
            assert record.headers == expected.headers
            assert record.value == expected.value
            assert decode(record.value, record.headers) == event
            attributes = headers_dict(record.headers)
            assert attributes["ce_id"] == event.event_id
            assert attributes["ce_source"] == SOURCE
            assert attributes["content-type"] == "application/json"


async def test_the_events_of_one_upload_are_read_in_emit_order(
    event_sink_and_reader: tuple[EventSink, RecordReader],
) -> None:
    sink, reader = event_sink_and_reader
    started = unique(SAMPLES["ingest.upload.started"], uuid.uuid4().hex[:8])
    assert isinstance(started, UploadStarted)
    ids = {"user_id": started.user_id, "upload_id": started.upload_id}
    progress = [
        msgspec.structs.replace(
            SAMPLES["ingest.upload.progress"], event_id=uuid.uuid4().hex, sequence=n, **ids
        )
        for n in range(1, 6)
    ]
    completed = msgspec.structs.replace(
        SAMPLES["ingest.upload.completed"], event_id=uuid.uuid4().hex, sequence=6, **ids
    )
    for event in [started, *progress, completed]:
        await sink.emit(event)

    uploads = await reader.read(reader.topics.uploads, 2)
    assert [decode(r.value, r.headers) for r in uploads] == [started, completed]
    read_progress = [
        decode(r.value, r.headers) for r in await reader.read(reader.topics.progress, 5)
    ]
    assert read_progress == progress
    assert all(isinstance(e, UploadProgress) for e in read_progress)
    assert {r.key for r in uploads} == {started.user_id.encode()}


async def test_a_record_of_an_unknown_type_is_skipped_by_decode(
    event_sink_and_reader: tuple[EventSink, RecordReader],
) -> None:
    sink, reader = event_sink_and_reader
    newer = unique(SAMPLES["ingest.upload.completed"], uuid.uuid4().hex[:8])
    assert isinstance(newer, UploadCompleted)
    encoded = encode(newer, source="/ingest/a-newer-version")
    headers = [
        (name, b"ingest.upload.teleported" if name == "ce_type" else value)
        for name, value in encoded.headers
    ]
    value = encoded.value.replace(b'"ingest.upload.completed"', b'"ingest.upload.teleported"')
    await reader.publish_raw(reader.topics.uploads, encoded.key, value, headers)
    known = msgspec.structs.replace(newer, event_id=uuid.uuid4().hex)
    await sink.emit(known)

    unknown_record, known_record = await reader.read(reader.topics.uploads, 2)
    assert headers_dict(unknown_record.headers)["ce_type"] == "ingest.upload.teleported"
    assert decode(unknown_record.value, unknown_record.headers) is None
    assert decode(known_record.value, known_record.headers) == known


async def test_check_answers(event_sink_and_reader: tuple[EventSink, RecordReader]) -> None:
    sink, _ = event_sink_and_reader
    await sink.check()
