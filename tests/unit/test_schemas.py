"""The public contract: event types, CloudEvents codec, topics and published JSON Schemas.

Expected values are written out here rather than derived from the code under
test, so that a change to the contract has to be made twice, on purpose.
"""

from __future__ import annotations

import importlib
import json
import logging
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from schemas import (
    EVENT_TYPES,
    DetectionCompleted,
    InvalidEvent,
    QuotaLimitsSet,
    Topics,
    UploadStarted,
    decode,
    encode,
    event_type,
    headers_dict,
    key_of,
    subject_of,
    topic_for,
)
from schemas.jsonschema import JSON_DIR, drift, generate, render
from tests.samples import SAMPLES, SHA, SOURCE, T0, UPLOAD, UPLOAD_FIELDS, USER

# event type -> (expected subject, expected Kafka key, expected topic suffix)
ROUTING: dict[str, tuple[str, bytes, str]] = {
    "ingest.upload.started": (UPLOAD, USER.encode(), "uploads"),
    "ingest.upload.progress": (UPLOAD, UPLOAD.encode(), "progress"),
    "ingest.upload.completed": (UPLOAD, USER.encode(), "uploads"),
    "ingest.upload.failed": (UPLOAD, USER.encode(), "uploads"),
    "ingest.upload.cancelled": (UPLOAD, USER.encode(), "uploads"),
    "ingest.detection.completed": (UPLOAD, USER.encode(), "detections"),
    "ingest.detection.failed": (UPLOAD, USER.encode(), "detections"),
    "ingest.quota.updated": (USER, USER.encode(), "quota"),
    "ingest.quota.limits_set": (USER, USER.encode(), "quota.commands"),
}

ALL_TYPES = sorted(ROUTING)


def _with_header(
    headers: list[tuple[str, bytes]], name: str, value: bytes
) -> list[tuple[str, bytes]]:
    return [(n, value if n == name else v) for n, v in headers]


# What downstream code imports from `schemas.events` (and, but for the two field
# helpers, from `schemas`): written out, so a name dropped by a move fails here.
EVENT_NAMES = (
    "ERROR_CODES",
    "EVENT_TYPES",
    "SCHEMA_URI_PREFIX",
    "AppliedOffset",
    "CountedUpload",
    "DetectionCompleted",
    "DetectionEvent",
    "DetectionFailed",
    "ErrorCode",
    "Event",
    "EventBase",
    "FrameMeasurements",
    "QuotaEvent",
    "QuotaLimitsSet",
    "QuotaUpdated",
    "UploadCancelled",
    "UploadCompleted",
    "UploadEvent",
    "UploadFailed",
    "UploadProgress",
    "UploadProtocol",
    "UploadStarted",
    "VideoInfo",
    "event_type",
    "key_field",
    "key_of",
    "schema_uri",
    "subject_field",
    "subject_of",
)


def test_every_event_name_is_importable_from_schemas_events_and_schemas() -> None:
    events = importlib.import_module("schemas.events")
    package = importlib.import_module("schemas")
    assert sorted(events.__all__) == sorted(EVENT_NAMES)
    for name in EVENT_NAMES:
        value = getattr(events, name)
        if name not in {"key_field", "subject_field"}:
            assert getattr(package, name) is value, name
            assert name in package.__all__, name


def test_samples_and_routing_cover_every_event_type() -> None:
    # A new event type must get a sample and a route here, or it is untested.
    assert set(SAMPLES) == set(ROUTING) == set(EVENT_TYPES)
    assert {event_type(event): tag for tag, event in SAMPLES.items()} == {t: t for t in SAMPLES}


@pytest.mark.parametrize("tag", ALL_TYPES)
def test_round_trip_with_headers(tag: str) -> None:
    event = SAMPLES[tag]
    subject, key, _ = ROUTING[tag]

    record = encode(event, source=SOURCE)

    assert record.key == key
    assert record.headers == [
        ("ce_specversion", b"1.0"),
        ("ce_id", event.event_id.encode()),
        ("ce_source", SOURCE.encode()),
        ("ce_type", tag.encode()),
        ("ce_time", b"2024-05-06T07:08:09.123456Z"),
        ("ce_subject", subject.encode()),
        ("ce_dataschema", f"urn:video-ingest:schema:{tag}".encode()),
        ("content-type", b"application/json"),
    ]
    payload = json.loads(record.value)
    assert payload["type"] == tag
    assert payload["event_id"] == event.event_id
    assert payload["occurred_at"] == "2024-05-06T07:08:09.123456Z"

    decoded = decode(record.value, record.headers)
    assert type(decoded) is type(event)
    assert decoded == event


def test_ce_dataschema_names_the_published_schema_file() -> None:
    for tag, event in SAMPLES.items():
        uri = headers_dict(encode(event, source=SOURCE).headers)["ce_dataschema"]
        published = json.loads((JSON_DIR / f"{tag}.json").read_text(encoding="utf-8"))
        assert published["$id"] == uri


def test_unknown_type_is_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    record = encode(SAMPLES["ingest.upload.started"], source=SOURCE)
    headers = _with_header(record.headers, "ce_type", b"ingest.upload.paused")
    value = record.value.replace(b'"ingest.upload.started"', b'"ingest.upload.paused"')

    with caplog.at_level(logging.INFO, logger="schemas.cloudevents"):
        assert decode(value, headers) is None

    [line] = [r for r in caplog.records if r.name == "schemas.cloudevents"]
    assert line.levelno == logging.INFO
    assert "ingest.upload.paused" in line.getMessage()


def test_unknown_type_is_skipped_even_with_a_payload_nobody_can_read() -> None:
    headers = [("ce_specversion", b"2.0"), ("ce_type", b"ingest.upload.v9")]
    assert decode(b"\x00 not json", headers) is None


def test_ce_type_disagreeing_with_payload_raises() -> None:
    record = encode(SAMPLES["ingest.upload.progress"], source=SOURCE)
    headers = _with_header(record.headers, "ce_type", b"ingest.upload.completed")

    with pytest.raises(InvalidEvent, match="disagrees") as caught:
        decode(record.value, headers)
    assert isinstance(caught.value, ValueError)
    assert caught.value.event_type == "ingest.upload.completed"


def test_known_ce_type_with_unknown_payload_tag_raises() -> None:
    record = encode(SAMPLES["ingest.upload.progress"], source=SOURCE)
    value = record.value.replace(b'"ingest.upload.progress"', b'"ingest.upload.paused"')
    with pytest.raises(InvalidEvent, match=r"invalid ingest\.upload\.progress payload"):
        decode(value, record.headers)


def test_ce_id_disagreeing_with_event_id_raises() -> None:
    record = encode(SAMPLES["ingest.quota.updated"], source=SOURCE)
    with pytest.raises(InvalidEvent, match="ce_id"):
        decode(record.value, _with_header(record.headers, "ce_id", b"another-id"))


def test_payload_without_event_id_is_rejected_not_given_a_fresh_one() -> None:
    record = encode(SAMPLES["ingest.quota.updated"], source=SOURCE)
    payload = json.loads(record.value)
    del payload["event_id"]
    with pytest.raises(InvalidEvent, match="ce_id"):
        decode(json.dumps(payload).encode(), record.headers)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"{not json", "invalid ingest.upload.failed payload"),
        (b'{"type": "ingest.upload.failed"}', "missing required field"),
    ],
)
def test_malformed_payload_of_known_type_raises(value: bytes, message: str) -> None:
    record = encode(SAMPLES["ingest.upload.failed"], source=SOURCE)
    with pytest.raises(InvalidEvent, match=message):
        decode(value, record.headers)


def test_value_outside_a_closed_set_raises() -> None:
    record = encode(SAMPLES["ingest.upload.failed"], source=SOURCE)
    value = record.value.replace(b'"STORAGE_ERROR"', b'"DISK_ON_FIRE"')
    with pytest.raises(InvalidEvent, match=r"\$\.error_code"):
        decode(value, record.headers)


def test_constraint_violation_raises() -> None:
    record = encode(SAMPLES["ingest.upload.completed"], source=SOURCE)
    value = record.value.replace(SHA.encode(), SHA.upper().encode())
    with pytest.raises(InvalidEvent, match=r"\$\.sha256"):
        decode(value, record.headers)


def test_missing_ce_type_or_wrong_specversion_raises() -> None:
    record = encode(SAMPLES["ingest.upload.started"], source=SOURCE)
    without_type = [(n, v) for n, v in record.headers if n != "ce_type"]
    with pytest.raises(InvalidEvent, match="no ce_type"):
        decode(record.value, without_type)
    with pytest.raises(InvalidEvent, match="ce_specversion"):
        decode(record.value, _with_header(record.headers, "ce_specversion", b"0.3"))


def test_payload_with_unknown_extra_field_still_decodes() -> None:
    event = SAMPLES["ingest.upload.completed"]
    record = encode(event, source=SOURCE)
    payload = json.loads(record.value)
    payload["added_in_a_later_version"] = {"nested": [1, 2, 3]}

    assert decode(json.dumps(payload).encode(), record.headers) == event


def test_payload_from_before_a_defaulted_field_decodes_with_the_default() -> None:
    event = SAMPLES["ingest.detection.completed"]
    assert isinstance(event, DetectionCompleted)
    record = encode(event, source=SOURCE)
    payload = json.loads(record.value)
    del payload["reused_from"], payload["findings"]

    decoded = decode(json.dumps(payload).encode(), record.headers)

    assert isinstance(decoded, DetectionCompleted)
    assert decoded.reused_from is None
    assert decoded.findings == []
    assert decoded.video == event.video


def test_headers_dict_reads_text_keeps_last_and_skips_null() -> None:
    assert headers_dict(
        [("ce_type", b"a"), ("ce_id", None), ("ce_type", b"b"), ("x", b"\xff")]
    ) == {"ce_type": "b", "x": "\ufffd"}


def test_encode_refuses_an_empty_source() -> None:
    with pytest.raises(ValueError, match="source"):
        encode(SAMPLES["ingest.upload.started"], source="")


def test_defaults_give_a_fresh_id_and_utc_now() -> None:
    before = datetime.now(UTC)
    first = QuotaLimitsSet(user_id=USER, bytes_limit=1, uploads_limit=1, set_by="a")
    second = QuotaLimitsSet(user_id=USER, bytes_limit=1, uploads_limit=1, set_by="a")

    assert len(first.event_id) == 32
    int(first.event_id, 16)
    assert first.event_id != second.event_id
    assert first.occurred_at.tzinfo is UTC
    assert before <= first.occurred_at <= datetime.now(UTC)


def test_upload_defaults() -> None:
    fields = {
        k: v
        for k, v in UPLOAD_FIELDS.items()
        if k not in {"priority", "auto_analyze", "dashboard_context", "metadata"}
    }
    started = UploadStarted(**fields, sequence=0, started_at=T0)
    assert started.priority == 5
    assert started.auto_analyze is True
    assert started.dashboard_context is None
    assert started.metadata == {}
    other = UploadStarted(**fields, sequence=1, started_at=T0)
    assert other.metadata is not started.metadata


def test_naive_datetimes_are_refused_and_offsets_normalised_to_utc() -> None:
    with pytest.raises(ValueError, match="started_at must be timezone-aware"):
        UploadStarted(**UPLOAD_FIELDS, sequence=0, started_at=datetime(2024, 1, 1))

    paris = timezone(timedelta(hours=2))
    event = UploadStarted(
        **{**UPLOAD_FIELDS, "occurred_at": datetime(2024, 5, 6, 9, 8, 9, tzinfo=paris)},
        sequence=0,
        started_at=T0,
    )
    assert event.occurred_at == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert event.occurred_at.tzinfo is UTC
    ce_time = headers_dict(encode(event, source=SOURCE).headers)["ce_time"]
    assert ce_time == "2024-05-06T07:08:09Z"


def test_events_are_frozen() -> None:
    with pytest.raises(AttributeError):
        SAMPLES["ingest.upload.started"].user_id = "someone-else"  # type: ignore[misc]


@pytest.mark.parametrize("tag", ALL_TYPES)
def test_subject_key_and_topic(tag: str) -> None:
    subject, key, suffix = ROUTING[tag]
    event = SAMPLES[tag]

    assert subject_of(event) == subject
    assert key_of(event) == key
    assert topic_for(tag, Topics()) == f"ingest.{suffix}"
    assert topic_for(tag, Topics("acme-prod.")) == f"acme-prod.{suffix}"


def test_topic_for_an_unknown_type_raises() -> None:
    with pytest.raises(KeyError, match=r"ingest\.upload\.paused"):
        topic_for("ingest.upload.paused", Topics())


def test_topic_names_and_specs() -> None:
    topics = Topics("t1_")
    assert (
        topics.uploads,
        topics.progress,
        topics.detections,
        topics.quota,
        topics.quota_commands,
        topics.dlq,
    ) == ("t1_uploads", "t1_progress", "t1_detections", "t1_quota", "t1_quota.commands", "t1_dlq")

    specs = dict(topics.specs())
    assert list(specs) == [
        "t1_uploads",
        "t1_progress",
        "t1_detections",
        "t1_quota",
        "t1_quota.commands",
        "t1_dlq",
    ]
    assert specs["t1_uploads"].key == "user_id"
    assert specs["t1_progress"].key == "upload_id"
    assert specs["t1_uploads"].config["cleanup.policy"] == "delete"
    assert int(specs["t1_uploads"].config["retention.ms"]) == 90 * 24 * 3600 * 1000
    assert specs["t1_progress"].config["cleanup.policy"] == "compact,delete"
    assert int(specs["t1_progress"].config["retention.ms"]) == 3600 * 1000
    assert int(specs["t1_progress"].config["segment.ms"]) <= 3600 * 1000
    assert specs["t1_quota"].config["cleanup.policy"] == "compact"
    for name in ("t1_detections", "t1_quota.commands", "t1_dlq"):
        assert specs[name].config["cleanup.policy"] == "delete"
    for spec in specs.values():
        assert "min.insync.replicas" not in spec.config
        assert spec.partitions >= 1
    # Keyed by user_id, read together by the quota ledger: same partition count.
    user_keyed = {specs[n].partitions for n in ("t1_uploads", "t1_quota", "t1_quota.commands")}
    assert len(user_keyed) == 1


@pytest.mark.parametrize("prefix", ["has space.", "slash/", "x" * 240])
def test_topics_refuse_a_prefix_kafka_would_refuse(prefix: str) -> None:
    with pytest.raises(ValueError, match="topic prefix"):
        Topics(prefix)


def test_published_json_schemas_match_the_types() -> None:
    wrong = drift()
    assert not wrong, (
        f"schemas/json/ is out of date ({', '.join(wrong)}): "
        "run `python -m schemas.jsonschema` and commit the result"
    )


def test_generated_schemas_cover_every_type_and_require_ids() -> None:
    files = generate()
    assert set(files) == {f"{tag}.json" for tag in ALL_TYPES} | {"events.json"}
    union = files["events.json"]
    assert union["discriminator"]["propertyName"] == "type"
    assert set(union["discriminator"]["mapping"]) == set(ALL_TYPES)
    for tag in ALL_TYPES:
        schema = files[f"{tag}.json"]
        definition = schema["$defs"][schema["$ref"].removeprefix("#/$defs/")]
        assert definition["properties"]["type"] == {"enum": [tag]}
        assert {"type", "event_id", "occurred_at"} <= set(definition["required"])
        assert render(schema).endswith("}\n")


def test_generated_schema_accepts_what_encode_writes() -> None:
    # No JSON Schema validator in the dependencies: check the encoded payloads
    # carry exactly the properties the published schema describes, all required
    # ones included, so the schema and the wire format cannot silently diverge.
    files = generate()
    for tag, event in SAMPLES.items():
        schema = files[f"{tag}.json"]
        definition = schema["$defs"][schema["$ref"].removeprefix("#/$defs/")]
        payload = msgspec.json.decode(encode(event, source=SOURCE).value)
        assert set(payload) == set(definition["properties"])
        assert set(definition["required"]) <= set(payload)
