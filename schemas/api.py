"""Request and response bodies of the ingest HTTP API, as published to clients.

The same evolution rules as the events apply (see `schemas.events`): fields are
only added, with defaults. Requests forbid nothing unknown, so an older server
ignores a newer client's extra fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from schemas.events import DetectionCompleted, DetectionFailed

Sha256Hex = Annotated[str, Meta(pattern="^[0-9a-fA-F]{64}$")]
SessionStatus = Literal["active", "uploading", "completed", "failed", "cancelled", "expired"]


class CreateUploadRequest(msgspec.Struct, frozen=True, kw_only=True):
    filename: Annotated[str, Meta(min_length=1, max_length=1024)] | None = None
    expected_file_size: Annotated[int, Meta(ge=0)] | None = None
    file_format: Annotated[str, Meta(min_length=1, max_length=16)] | None = None
    file_hash: Sha256Hex | None = None
    auto_analyze: bool = True
    priority: Annotated[int, Meta(ge=1, le=10)] = 5
    metadata: dict[str, Any] | None = None
    dashboard_context: dict[str, Any] | None = None


class UploadInstructions(msgspec.Struct, frozen=True, kw_only=True):
    method: str
    url: str
    alternatives: list[str]
    part_size: int
    headers: dict[str, str]
    notes: str


class CreateUploadResponse(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    upload_url: str
    max_file_size: int
    allowed_formats: list[str]
    remaining_quota: int
    quota_limit: int
    session_expires_at: datetime
    dashboard_context: dict[str, Any] | None
    upload_instructions: UploadInstructions | None
    status: SessionStatus = "active"
    duplicate_of: str | None = None
    result: UploadResponse | None = None


class UploadResponse(msgspec.Struct, frozen=True, kw_only=True):
    video_id: str
    analysis_id: str
    upload_status: Literal["completed"]
    redirect_url: str
    estimated_processing_time: float
    filename: str | None
    file_size: int
    file_hash: str
    format: str
    s3_key: str
    created_at: datetime
    uploaded_at: datetime
    metadata: dict[str, Any]
    duplicate_of: str | None = None


class SessionStatusResponse(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    status: SessionStatus
    message: str
    filename: str | None
    expected_file_size: int | None
    bytes_received: int
    created_at: datetime
    expires_at: datetime
    updated_at: datetime | None
    error_code: str | None = None
    result: UploadResponse | None = None


class SessionList(msgspec.Struct, frozen=True, kw_only=True):
    sessions: list[SessionStatusResponse]
    total: int


class ValidateRequest(msgspec.Struct, frozen=True, kw_only=True):
    session_id: Annotated[str, Meta(min_length=1)]


class ValidateResponse(msgspec.Struct, frozen=True, kw_only=True):
    is_valid: bool
    is_owner: bool
    session_status: SessionStatus | None


class QuotaResponse(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    quota_limit: int
    quota_used: int
    quota_remaining: int
    usage_percentage: float
    uploads_limit: int
    uploads_used: int
    period_start: str
    reset_date: str


# Far above any real need (one object is at most 5 TiB, one user's default quota 10 GiB),
# yet low enough that a limit with a few digits too many is refused instead of quietly
# lifting the quota. Both fit the events' 64-bit integers with room to spare.
MAX_QUOTA_BYTES: Final = 5 * 1024**5  # 5 PiB
MAX_QUOTA_UPLOADS: Final = 10**9

QuotaBytesLimit = Annotated[
    int, Meta(ge=0, le=MAX_QUOTA_BYTES, description="bytes per period, 0 to 5 PiB")
]
QuotaUploadsLimit = Annotated[
    int, Meta(ge=0, le=MAX_QUOTA_UPLOADS, description="uploads per period, 0 to 10^9")
]


class SetQuotaRequest(msgspec.Struct, frozen=True, kw_only=True):
    """`PUT /v1/admin/quotas/{user_id}`: a user's limits, replacing the ones set before.

    A limit left out (or null) is the service-wide default. At least one limit
    must be given: an empty body is far more likely a client's mistake than a
    wish to reset both, so decoding it raises a ValidationError saying so.
    A limit of 0 stops a user's new uploads while leaving them their stored
    files and every read route (shutting them out entirely is the identity
    provider's job).
    """

    quota_limit: QuotaBytesLimit | None = None
    uploads_limit: QuotaUploadsLimit | None = None

    def __post_init__(self) -> None:
        if self.quota_limit is None and self.uploads_limit is None:
            raise ValueError(
                "the request sets no limit: give quota_limit (bytes), uploads_limit, or both"
            )


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    error_code: str
    error_message: str
    details: dict[str, Any]
    timestamp: datetime


class SetQuotaResponse(msgspec.Struct, frozen=True, kw_only=True):
    """`PUT /v1/admin/quotas/{user_id}` (202): the limits as accepted, applied asynchronously."""

    user_id: str
    quota_limit: int | None
    uploads_limit: int | None


class HealthResponse(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["ok"]


class JournalReadiness(msgspec.Struct, frozen=True, kw_only=True):
    """The event journal in front of Kafka: what it holds, and whether the broker takes events."""

    events: int
    bytes: int
    oldest_seconds: float
    broker_up: bool


class ReadinessResponse(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /readyz`: `checks` names each dependency (s3, kafka, quota, journal) with `ok` or
    what failed. With a journal, Kafka down leaves the instance ready while the journal has
    room (events are journaled meanwhile); `journal` says what it holds."""

    status: Literal["ready", "not ready", "draining"]
    checks: dict[str, str] = {}
    journal: JournalReadiness | None = None


DetectionStatus = Literal["pending", "completed", "failed", "not_requested"]


class VideoResults(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /v1/videos/{video_id}/results`: the stored upload's facts and its detection outcome.

    `status` is `pending` until the detection consumer has an outcome,
    `not_requested` when the upload asked for no analysis (`auto_analyze`
    false), else `completed` or `failed`, and `detection` is then the event
    the consumer published (`ingest.detection.completed` or `.failed`).
    A completed detection of a file that is no usable video has
    `is_valid_video` false and says why in `invalid_code`.
    """

    video_id: str
    upload_id: str
    analysis_id: str
    filename: str | None
    size: int
    sha256: str
    format: str | None
    uploaded_at: datetime
    status: DetectionStatus
    detection: DetectionCompleted | DetectionFailed | None = None
    updated_at: datetime | None = None
