"""What the write path knows about one upload: its session and the target it streams to."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from schemas import UploadCompleted, UploadProtocol

SessionStatus = Literal["active", "uploading", "completed", "failed", "cancelled", "expired"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class UploadResult(msgspec.Struct, frozen=True, kw_only=True):
    video_id: str
    analysis_id: str
    size_bytes: int
    sha256: str
    format: str
    s3_key: str
    etag: str | None
    parts: int
    started_at: datetime
    completed_at: datetime
    duplicate_of: str | None = None


class UploadSession(msgspec.Struct, frozen=True, kw_only=True):
    """An upload session, stored as a JSON document shared by every instance."""

    session_id: str
    user_id: str
    filename: str | None
    expected_file_size: int | None
    file_format: str | None
    file_hash: str | None
    auto_analyze: bool
    priority: int
    metadata: dict[str, Any]
    dashboard_context: dict[str, Any] | None
    protocol: UploadProtocol
    s3_key: str
    created_at: datetime
    expires_at: datetime
    status: SessionStatus = "active"
    message: str | None = None
    instance_id: str | None = None
    bytes_received: int = 0
    error_code: str | None = None
    result: UploadResult | None = None
    completed_event: UploadCompleted | None = None
    """The `upload.completed` event exactly as emitted (its id is the CloudEvents id), recorded
    before it is sent, so `ingest reconcile` can send it again. None in documents written
    before it was kept, and for a duplicate answered at creation (no event is sent)."""
    updated_at: datetime | None = None
    streamer_beats: bool = False
    """The instance streaming it writes a heartbeat, so its death can be told from one (an
    instance of an earlier version, during a rolling update, writes none)."""
    unreported: bool = False
    """Ended on behalf of a streamer that cannot report it (gone, or never started): its
    multipart upload is still to abort and its terminal event to emit. Set together with
    the terminal status by whoever ends it (a DELETE, the sweep); cleared once both are done,
    so a failure of either is retried by the next sweep."""
    settling_until: datetime | None = None
    """Who settles an `unreported` session holds it until then (two sweepers and a DELETE
    never report one ending twice); a settler that died lets it lapse."""


class UploadTarget(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the pipeline needs to stream one body: where, what, and the limits."""

    upload_id: str
    user_id: str
    bucket: str
    s3_key: str
    filename: str | None
    content_type: str | None
    declared_format: str | None
    allowed_formats: tuple[str, ...]
    protocol: UploadProtocol
    priority: int
    auto_analyze: bool
    metadata: dict[str, Any]
    dashboard_context: dict[str, Any] | None
    declared_size: int | None
    max_size: int
    min_size: int
    quota_bytes_remaining: int | None = None
    expected_sha256: str | None = None
    """The SHA-256 (lowercase hex) the client declared: a body that hashes otherwise is not kept."""
