"""The events the service publishes: one frozen msgspec Struct per event type.

Every concrete type is part of the tagged union `Event`; the tag, stored in the
`type` field of the JSON payload, is the CloudEvents `type` (for example
`ingest.upload.completed`). Building an event with a naive datetime raises
ValueError; aware datetimes are normalised to UTC, so every timestamp a consumer
sees is UTC. Field constraints (sizes >= 0, priority 1-10, sha256 as lowercase
hex) are checked when a payload is decoded, not when a Struct is built.

How these types may change (they are a public contract; downstream teams decode
them with code we do not control and with the JSON Schemas in `schemas/json/`):

* A change must let an old consumer read a new payload and a new consumer read an
  old one. So the only change allowed to an existing type is a new field that
  has a default; a payload written before the field existed decodes with that
  default, and a consumer that does not know the field ignores it (unknown
  fields are never forbidden here).
* A field is never removed, renamed, or given another type or meaning. A field
  that becomes useless stays, filled with its default.
* The sets of values of `ErrorCode` and `UploadProtocol` are closed: an old
  consumer would reject a value it has not seen. An unexpected failure is
  reported as `INTERNAL` with the detail in `error_message`.
* A new kind of event is a new Struct with a new tag. Consumers skip tags they
  do not know (`schemas.cloudevents.decode` returns None for them), so adding a
  type never breaks anyone.
* A change that cannot follow these rules is a new event type whose tag carries
  a version suffix (`ingest.upload.completed.v2`), published next to the old
  one until every consumer has moved.

These rules are checked, not only written: `schemas/released/` keeps the JSON
Schemas of the last release, and a test (`schemas.compatibility`) refuses any
change that a consumer of them would not survive, in both directions (a field
removed or renamed, a type narrowed or widened, a required field added, an enum
value removed or added, an event type removed), naming the type and the field.

The release step, once the release's changes are merged:

1. `python -m schemas.compatibility --release` runs the same check and, only if
   it passes, makes the schemas of now the snapshot in `schemas/released/`;
2. if the snapshot changed, raise the minor number of `CONTRACT_VERSION` in
   `schemas/asyncapi.py` and run `python -m schemas.jsonschema`;
3. commit `schemas/released/`, the version and the generated files together.

Retiring a superseded type once no consumer reads it is the one deliberate
break: delete its file from `schemas/released/` in the reviewed commit that
removes the type.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, TypeAlias, get_args

import msgspec
from msgspec import Meta

__all__ = [
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
]

ErrorCode: TypeAlias = Literal[
    "TOO_LARGE",
    "UNSUPPORTED_FORMAT",
    "QUOTA_EXCEEDED",
    "CLIENT_DISCONNECTED",
    "STORAGE_ERROR",
    "CHECKSUM_MISMATCH",
    "TIMEOUT",
    "CANCELLED",
    "INTERNAL",
]
ERROR_CODES: Final[tuple[ErrorCode, ...]] = get_args(ErrorCode)

UploadProtocol: TypeAlias = Literal["dashboard", "stream", "tus"]

# Shared field types: the constraints and descriptions land in the JSON Schemas.
UtcDatetime = Annotated[datetime, Meta(tz=True, description="RFC 3339 timestamp, UTC")]
UploadId = Annotated[str, Meta(min_length=1, description="upload (session) id")]
UserId = Annotated[str, Meta(min_length=1, description="owner: the `sub` of the uploader's token")]
VideoId = Annotated[str, Meta(min_length=1, description="id of the stored video")]
AnalysisId = Annotated[str, Meta(min_length=1, description="id of the video's analysis")]
Sha256Hex = Annotated[
    str, Meta(pattern="^[0-9a-f]{64}$", description="SHA-256 of the whole file, lowercase hex")
]
ByteCount = Annotated[int, Meta(ge=0)]
Count = Annotated[int, Meta(ge=0)]
Seconds = Annotated[float, Meta(ge=0)]


def _new_event_id() -> str:
    return uuid.uuid4().hex


def _utc_now() -> datetime:
    return datetime.now(UTC)


class EventBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Fields every event carries. Not an event itself: never instantiate it."""

    event_id: Annotated[str, Meta(min_length=1, description="unique id; the CloudEvents id")] = (
        msgspec.field(default_factory=_new_event_id)
    )
    occurred_at: UtcDatetime = msgspec.field(default_factory=_utc_now)

    def __post_init__(self) -> None:
        # Runs on construction and on decode. A naive datetime would be written
        # without an offset and then be rejected by every consumer, so refuse it
        # here, where the producer's bug is.
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, datetime):
                if value.utcoffset() is None:
                    raise ValueError(f"{name} must be timezone-aware, got naive {value!r}")
                if value.tzinfo is not UTC:
                    msgspec.structs.force_setattr(self, name, value.astimezone(UTC))


class UploadEvent(EventBase, frozen=True, kw_only=True):
    """Fields shared by the upload lifecycle events. Not an event itself."""

    upload_id: UploadId
    user_id: UserId
    sequence: Annotated[
        int, Meta(ge=0, description="per-upload counter, increasing with every event of the upload")
    ]
    filename: str | None
    content_type: str | None
    format: Annotated[str | None, Meta(description="container format: mp4, mov, avi, mkv, webm")]
    protocol: UploadProtocol
    priority: Annotated[int, Meta(ge=1, le=10)] = 5
    auto_analyze: bool = True
    dashboard_context: dict[str, Any] | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    s3_bucket: str
    s3_key: str
    total_bytes: Annotated[
        ByteCount | None, Meta(description="size the client declared, when it declared one")
    ]


class UploadStarted(
    UploadEvent, frozen=True, kw_only=True, tag_field="type", tag="ingest.upload.started"
):
    """An upload's body started arriving."""

    started_at: UtcDatetime


class UploadProgress(
    UploadEvent, frozen=True, kw_only=True, tag_field="type", tag="ingest.upload.progress"
):
    """Bytes received so far; emitted at most every 0.5 s per upload and on every stored part."""

    bytes_received: ByteCount
    percentage: Annotated[float, Meta(ge=0, le=100)] | None
    speed_bps: Annotated[float, Meta(ge=0, description="bytes per second")]
    eta_seconds: Seconds | None
    parts_stored: Count


class UploadCompleted(
    UploadEvent, frozen=True, kw_only=True, tag_field="type", tag="ingest.upload.completed"
):
    """The whole file is stored in S3."""

    video_id: VideoId
    analysis_id: AnalysisId
    size_bytes: ByteCount
    sha256: Sha256Hex
    etag: str | None
    parts: Count
    started_at: UtcDatetime
    completed_at: UtcDatetime
    duplicate_of: Annotated[
        str | None,
        Meta(description="video_id of an earlier upload of the same sha256 by the same user"),
    ] = None


class UploadFailed(
    UploadEvent, frozen=True, kw_only=True, tag_field="type", tag="ingest.upload.failed"
):
    """The upload stopped on an error; its multipart upload was aborted."""

    error_code: ErrorCode
    error_message: str
    bytes_received: ByteCount


class UploadCancelled(
    UploadEvent, frozen=True, kw_only=True, tag_field="type", tag="ingest.upload.cancelled"
):
    """The upload was cancelled; its multipart upload was aborted."""

    bytes_received: ByteCount
    reason: str | None


class VideoInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What the detection found out about the stored video's stream."""

    duration_seconds: Seconds | None
    fps: Annotated[float, Meta(ge=0)]
    width: Count
    height: Count
    codec: Annotated[str | None, Meta(description="FourCC of the video stream")]
    frame_count: Annotated[Count | None, Meta(description="frame count the container reports")]
    frames_decoded: Annotated[Count, Meta(description="frames actually decoded")]
    container: Annotated[
        str | None,
        Meta(description="container recognised by its magic bytes: mp4, mov, avi, mkv, webm"),
    ] = None
    rotation_degrees: Annotated[
        int, Meta(description="rotation the stream's metadata asks players to apply")
    ] = 0
    flags: Annotated[
        list[str],
        Meta(
            description="unusual but valid input: LOW_FPS (< 5), HIGH_FPS (> 120), LARGE_FRAME "
            "(a side over 4096 px), ROTATED (rotation metadata), FRAME_COUNT_MISMATCH (the "
            "header's frame count differs from the frames decoded beyond the tolerance)"
        ),
    ] = msgspec.field(default_factory=list)


class FrameMeasurements(msgspec.Struct, frozen=True, kw_only=True):
    """What was measured on the frames sampled about once a second: measurements, not verdicts.

    Faces are found by OpenCV's bundled Haar cascade (frontal faces). Sizes are
    in pixels of the decoded frame; the jitter is how far the largest face's
    centre moves between consecutive samples that both have a face, as a
    fraction of the frame's diagonal; sharpness is the variance of the
    Laplacian of the grey frame (higher is sharper; it depends on content).
    """

    frames_sampled: Count
    frames_with_faces: Count
    faces_per_frame_mean: Annotated[float, Meta(ge=0)]
    faces_per_frame_max: Count
    largest_face_width: Count
    largest_face_height: Count
    face_box_jitter_mean: Annotated[float, Meta(ge=0)] | None
    sharpness_mean: Annotated[float, Meta(ge=0)] | None
    sharpness_min: Annotated[float, Meta(ge=0)] | None


class DetectionEvent(EventBase, frozen=True, kw_only=True):
    """Fields shared by the detection events. Not an event itself."""

    upload_id: UploadId
    user_id: UserId
    video_id: VideoId
    analysis_id: AnalysisId


class DetectionCompleted(
    DetectionEvent, frozen=True, kw_only=True, tag_field="type", tag="ingest.detection.completed"
):
    """A stored video was validated and analysed.

    `model` and `model_score` are null when no operator model ran; the score is
    the model's raw output, never a verdict on whether the video is real.
    """

    sha256: Sha256Hex
    s3_bucket: str
    s3_key: str
    is_valid_video: bool
    video: VideoInfo | None
    frames_sampled: Count
    faces_detected: Count
    model: str | None
    model_score: float | None
    reused_from: Annotated[
        str | None,
        Meta(description="analysis_id whose result was reused for the same sha256"),
    ] = None
    findings: Annotated[list[str], Meta(description="problems found, human-readable")] = (
        msgspec.field(default_factory=list)
    )
    invalid_code: Annotated[
        str | None,
        Meta(
            description="why the file is not a usable video when is_valid_video is false: "
            "NOT_A_VIDEO, CORRUPT, TOO_SHORT or UNSUPPORTED_CODEC; null when it is"
        ),
    ] = None
    measurements: Annotated[
        FrameMeasurements | None, Meta(description="measured on the sampled frames; null if none")
    ] = None
    model_faces_scored: Annotated[
        Count, Meta(description="face crops the operator's model scored; 0 when no model ran")
    ] = 0
    model_score_max: Annotated[
        float | None, Meta(description="the highest raw model output over the face crops")
    ] = None
    model_note: Annotated[
        str | None, Meta(description="what the model result means, or that no model ran")
    ] = None


class DetectionFailed(
    DetectionEvent, frozen=True, kw_only=True, tag_field="type", tag="ingest.detection.failed"
):
    """The analysis of a stored video could not be done."""

    error_code: Annotated[
        str,
        Meta(
            description="TIMEOUT (the decoder ran past the time limit and was stopped), CORRUPT "
            "(the decoder crashed on the file), STORAGE_ERROR or INTERNAL"
        ),
    ]
    error_message: str
    retriable: bool
    sha256: Sha256Hex | None = None


class QuotaEvent(EventBase, frozen=True, kw_only=True):
    """Fields shared by the quota events. Not an event itself."""

    user_id: UserId


class CountedUpload(msgspec.Struct, frozen=True, kw_only=True):
    """One upload a quota snapshot charged, with the size it charged."""

    upload_id: UploadId
    size_bytes: ByteCount


class AppliedOffset(msgspec.Struct, frozen=True, kw_only=True):
    """The highest offset of one input partition whose record a quota snapshot reflects."""

    topic: Annotated[str, Meta(min_length=1)]
    partition: Count
    offset: Count


class QuotaUpdated(
    QuotaEvent, frozen=True, kw_only=True, tag_field="type", tag="ingest.quota.updated"
):
    """A user's quota usage for the current period: a full snapshot, not a delta.

    The snapshot carries the ledger it was computed from, so anyone can check
    it: `bytes_used` is the sum of `counted_uploads` sizes plus
    `unlisted_bytes`, `uploads_used` their count plus `unlisted_uploads`, and
    no upload id appears twice. `applied_offsets` says which input records of
    this user it already reflects, so a consumer rebuilding from it skips them.
    """

    period_start: UtcDatetime
    period_end: UtcDatetime
    bytes_used: ByteCount
    bytes_limit: ByteCount
    uploads_used: Count
    uploads_limit: Count
    updated_at: UtcDatetime
    counted_uploads: Annotated[
        list[CountedUpload],
        Meta(description="the distinct uploads charged in the period, in the order charged"),
    ] = msgspec.field(default_factory=list)
    unlisted_bytes: Annotated[
        ByteCount,
        Meta(description="bytes of uploads charged in the period but no longer listed (bound)"),
    ] = 0
    unlisted_uploads: Annotated[
        Count, Meta(description="uploads charged in the period but no longer listed (bound)")
    ] = 0
    admin_bytes_limit: Annotated[
        ByteCount | None, Meta(description="the byte limit an admin set; null: the default")
    ] = None
    admin_uploads_limit: Annotated[
        Count | None, Meta(description="the upload limit an admin set; null: the default")
    ] = None
    applied_offsets: Annotated[
        list[AppliedOffset],
        Meta(description="per input partition, the highest offset of this user's records applied"),
    ] = msgspec.field(default_factory=list)


class QuotaLimitsSet(
    QuotaEvent, frozen=True, kw_only=True, tag_field="type", tag="ingest.quota.limits_set"
):
    """An admin set a user's limits; null means the service-wide default applies."""

    bytes_limit: ByteCount | None
    uploads_limit: Count | None
    set_by: Annotated[str, Meta(description="user id of the admin")]


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
