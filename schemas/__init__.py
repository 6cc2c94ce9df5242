"""The public contract of the ingest service: event types, topics, the CloudEvents codec.

Shared by the write path and every consumer, so it imports only msgspec and the
standard library. The JSON Schemas generated from these types are published in
`schemas/json/`, the AsyncAPI document of the topics in `schemas/asyncapi.json`
(regenerate both with `python -m schemas.jsonschema`).
"""

from schemas.cloudevents import (
    CONTENT_TYPE,
    SPEC_VERSION,
    EncodedEvent,
    InvalidEvent,
    decode,
    encode,
    headers_dict,
)
from schemas.events import (
    ERROR_CODES,
    EVENT_TYPES,
    SCHEMA_URI_PREFIX,
    DetectionCompleted,
    DetectionEvent,
    DetectionFailed,
    ErrorCode,
    Event,
    EventBase,
    QuotaEvent,
    QuotaLimitsSet,
    QuotaUpdated,
    UploadCancelled,
    UploadCompleted,
    UploadEvent,
    UploadFailed,
    UploadProgress,
    UploadProtocol,
    UploadStarted,
    VideoInfo,
    event_type,
    key_of,
    schema_uri,
    subject_of,
)
from schemas.topics import DEFAULT_PREFIX, TOPIC_SPECS, Topics, TopicSpec, topic_for

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_PREFIX",
    "ERROR_CODES",
    "EVENT_TYPES",
    "SCHEMA_URI_PREFIX",
    "SPEC_VERSION",
    "TOPIC_SPECS",
    "DetectionCompleted",
    "DetectionEvent",
    "DetectionFailed",
    "EncodedEvent",
    "ErrorCode",
    "Event",
    "EventBase",
    "InvalidEvent",
    "QuotaEvent",
    "QuotaLimitsSet",
    "QuotaUpdated",
    "TopicSpec",
    "Topics",
    "UploadCancelled",
    "UploadCompleted",
    "UploadEvent",
    "UploadFailed",
    "UploadProgress",
    "UploadProtocol",
    "UploadStarted",
    "VideoInfo",
    "decode",
    "encode",
    "event_type",
    "headers_dict",
    "key_of",
    "schema_uri",
    "subject_of",
    "topic_for",
]
