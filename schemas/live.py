"""The live service's public contract: WebSocket messages and the live progress body.

Server messages share one envelope, `LiveMessage`: `event_type` says what
happened, `session_id` and `user_id` whose upload it is (null for messages
about the connection itself), `data` the details, `timestamp` when the event
happened, and `cursor` where the feed stood when the message was queued: hand
it back as `?since=<cursor>` when reconnecting to miss nothing.

For the events read from Kafka, `data` is the event's own payload as
published (its JSON Schema is `schemas/json/<type>.json`, e.g. `sequence`,
`bytes_received`, `percentage` for progress), and `upload_complete` adds
`redirect_url`. The other messages carry:

* `heartbeat`: `{}`, every heartbeat interval (its cursor moves on even when
  nothing of the user's happens, so a reconnect replays little);
* `resync`: `{"reason"}`, the cursor given is older than what Kafka keeps (or
  could not be read): events may have been missed, fetch the state again over
  HTTP; the live feed follows;
* `pong`: `{}`, the answer to `ping`; `stats`: the answer to `get_stats`;
  `error`: `{"error_code", "error_message"}` for a client message it could not use.

Client messages are `ClientMessage`: `{"type": "ping" | "get_stats" |
"subscribe_session" | "unsubscribe_session", "session_id"?}`.

The evolution rules of `schemas.events` apply: fields and event types are
only added; clients skip event types they do not know.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal, TypeAlias, get_args

import msgspec
from msgspec import Meta

__all__ = [
    "CLIENT_MESSAGE_TYPES",
    "LIVE_EVENT_TYPES",
    "LIVE_SCHEMA_FILES",
    "ClientMessage",
    "LiveEventType",
    "LiveMessage",
    "LiveStats",
    "UploadProgressResponse",
]

LiveEventType: TypeAlias = Literal[
    "upload_started",
    "upload_progress",
    "upload_complete",
    "upload_error",
    "upload_cancelled",
    "duplicate_detected",
    "processing_completed",
    "processing_failed",
    "quota_updated",
    "heartbeat",
    "resync",
    "pong",
    "stats",
    "error",
]
LIVE_EVENT_TYPES: Final[tuple[LiveEventType, ...]] = get_args(LiveEventType)

ClientMessageType: TypeAlias = Literal[
    "ping", "get_stats", "subscribe_session", "unsubscribe_session"
]
CLIENT_MESSAGE_TYPES: Final[tuple[ClientMessageType, ...]] = get_args(ClientMessageType)


class LiveMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One message of the WebSocket feed (`/ws/upload-progress`), server to client."""

    event_type: LiveEventType
    session_id: Annotated[str | None, Meta(description="the upload (session) it is about")]
    user_id: Annotated[str | None, Meta(description="the upload's owner")]
    data: dict[str, Any]
    timestamp: Annotated[datetime, Meta(tz=True, description="when it happened, UTC")]
    cursor: Annotated[
        str | None, Meta(description="opaque; reconnect with ?since=<cursor> to miss nothing")
    ]


class ClientMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One message a client sends on the feed."""

    type: ClientMessageType
    session_id: Annotated[str, Meta(min_length=1, max_length=256)] | None = None


class LiveStats(msgspec.Struct, frozen=True, kw_only=True):
    """`data` of a `stats` message: this connection and the replica it is on."""

    connections: int
    user_connections: int
    subscribed_sessions: list[str]
    queued: int
    sent: int


UploadState = Literal["uploading", "completed", "failed", "cancelled"]


class UploadProgressResponse(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /v1/uploads/{id}/progress` on the live service."""

    session_id: str
    percentage: float | None
    bytes_uploaded: int
    total_bytes: int | None
    upload_speed: Annotated[float, Meta(description="bytes per second")]
    estimated_completion: Annotated[
        datetime | None, Meta(description="when the upload should end at the current speed")
    ]
    status: UploadState
    filename: str | None
    started_at: datetime | None
    last_updated: datetime
    video_id: str | None = None
    analysis_id: str | None = None
    redirect_url: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    completed_at: datetime | None = None


LIVE_SCHEMA_FILES: Final[dict[str, type[msgspec.Struct]]] = {
    "message.json": LiveMessage,
    "client-message.json": ClientMessage,
    "upload-progress.json": UploadProgressResponse,
    "stats.json": LiveStats,
}
"""The published JSON Schemas of the live service (`schemas/json/live/`), by file name."""
