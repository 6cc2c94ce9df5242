"""The union of every event type, and what is derived from an event's class.

`Event` is the tagged union decoders take; the tag is the CloudEvents `type`.
From a class follow its JSON Schema's URI, the field the `ce_subject` header
repeats and the field whose value is the Kafka record key. `event_type` raises
TypeError for a class without a string tag (a Struct that lost its tag).
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias, get_args

from schemas.events.base import EventBase
from schemas.events.detection import DetectionCompleted, DetectionEvent, DetectionFailed
from schemas.events.quota import QuotaLimitsSet, QuotaUpdated
from schemas.events.upload import (
    UploadCancelled,
    UploadCompleted,
    UploadEvent,
    UploadFailed,
    UploadProgress,
    UploadStarted,
)

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_URI_PREFIX",
    "Event",
    "event_type",
    "key_field",
    "key_of",
    "schema_uri",
    "subject_field",
    "subject_of",
]

Event: TypeAlias = (
    UploadStarted
    | UploadProgress
    | UploadCompleted
    | UploadFailed
    | UploadCancelled
    | DetectionCompleted
    | DetectionFailed
    | QuotaUpdated
    | QuotaLimitsSet
)


def _tag(cls: type[EventBase]) -> str:
    tag = cls.__struct_config__.tag
    if not isinstance(tag, str):  # only reachable if a Struct above lost its tag
        raise TypeError(f"{cls.__name__} has no string tag")
    return tag


EVENT_TYPES: Final[dict[str, type[Event]]] = {_tag(cls): cls for cls in get_args(Event)}
"""Event class by CloudEvents type (the tag)."""


def event_type(event: Event | type[Event]) -> str:
    """The CloudEvents type (the union tag) of an event or event class."""
    cls = event if isinstance(event, type) else type(event)
    return _tag(cls)


# A URN rather than a URL: it names the schema without promising that it is
# served anywhere. `<prefix><type>` maps one to one to `schemas/json/<type>.json`
# and needs no version, since an incompatible change gets a new type.
SCHEMA_URI_PREFIX: Final = "urn:video-ingest:schema:"


def schema_uri(event_type: str) -> str:
    """The URI of an event type's JSON Schema: its `$id` and the `ce_dataschema` header."""
    return SCHEMA_URI_PREFIX + event_type


def subject_field(cls: type[Event]) -> Literal["upload_id", "user_id"]:
    """The payload field the `ce_subject` header repeats for events of this class.

    The upload for upload and detection events, else the user.
    """
    return "upload_id" if issubclass(cls, UploadEvent | DetectionEvent) else "user_id"


def subject_of(event: Event) -> str:
    """What the event is about: the value of its `subject_field`."""
    subject: str = getattr(event, subject_field(type(event)))
    return subject


def key_field(cls: type[Event]) -> Literal["upload_id", "user_id"]:
    """The payload field whose UTF-8 bytes are the Kafka record key of events of this class.

    Progress is keyed per upload so its compacted topic keeps the last state of
    each upload; the other topics are keyed per user so one user's events stay
    in order on one partition.
    """
    return "upload_id" if issubclass(cls, UploadProgress) else "user_id"


def key_of(event: Event) -> bytes:
    """The Kafka record key: the value of the event's `key_field`, as UTF-8."""
    key: str = getattr(event, key_field(type(event)))
    return key.encode()
