"""The events of an upload's life: started, progress, completed, failed, cancelled.

Each carries the upload's common fields (`UploadEvent`) and a per-upload
`sequence`. Pure types: nothing here does I/O; constraints are checked on
decode (see `schemas.events` for how these types may change).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from schemas.events.base import (
    AnalysisId,
    ByteCount,
    Count,
    ErrorCode,
    EventBase,
    Seconds,
    Sha256Hex,
    UploadId,
    UploadProtocol,
    UserId,
    UtcDatetime,
    VideoId,
)

__all__ = [
    "UploadCancelled",
    "UploadCompleted",
    "UploadEvent",
    "UploadFailed",
    "UploadProgress",
    "UploadStarted",
]


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
