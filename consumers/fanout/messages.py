"""From the events read off Kafka to the messages of the feed (`schemas.live.LiveMessage`).

`translate` names the message an event becomes and builds its `data`: the
event's payload as published, plus `redirect_url` on a completion; a quota
snapshot leaves out its ledger (the upload ids and input offsets it
counted), which is internal to the quota consumer and can be large.
`Rendered` is one message ready to send, its text encoded once for every
recipient, re-encoded only for a client whose cursor must differ.

How it fails: never; an event of a type it does not know gives None.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from infra.feeds import TopicPartition
from schemas import (
    DetectionCompleted,
    DetectionFailed,
    Event,
    QuotaUpdated,
    UploadCancelled,
    UploadCompleted,
    UploadFailed,
    UploadProgress,
    UploadStarted,
)
from schemas.live import LiveEventType, LiveMessage

_encoder = msgspec.json.Encoder()
_LEDGER_FIELDS: Final = ("counted_uploads", "applied_offsets")


def results_url(video_id: str) -> str:
    """The dashboard page of a video's results (as the write path's answer names it)."""
    return f"/dashboard/videos/{video_id}/results"


def kind_of(event: Event) -> LiveEventType | None:
    if isinstance(event, UploadProgress):
        return "upload_progress"
    if isinstance(event, UploadStarted):
        return "upload_started"
    if isinstance(event, UploadCompleted):
        return "duplicate_detected" if event.duplicate_of else "upload_complete"
    if isinstance(event, UploadFailed):
        return "upload_error"
    if isinstance(event, UploadCancelled):
        return "upload_cancelled"
    if isinstance(event, DetectionCompleted):
        return "processing_completed"
    if isinstance(event, DetectionFailed):
        return "processing_failed"
    if isinstance(event, QuotaUpdated):
        return "quota_updated"
    return None


def translate(event: Event) -> LiveMessage | None:
    """The feed's message for `event`, with no cursor yet; None for a type the feed skips."""
    kind = kind_of(event)
    if kind is None:
        return None
    data: dict[str, Any] = msgspec.to_builtins(event)
    if isinstance(event, UploadCompleted):
        data["redirect_url"] = results_url(event.video_id)
    if isinstance(event, QuotaUpdated):
        for name in _LEDGER_FIELDS:
            data.pop(name, None)
    session_id = getattr(event, "upload_id", None)
    return LiveMessage(
        event_type=kind,
        session_id=session_id,
        user_id=event.user_id,
        data=data,
        timestamp=event.occurred_at,
        cursor=None,
    )


def notice(
    kind: LiveEventType, cursor: str | None, data: dict[str, Any] | None = None
) -> LiveMessage:
    """A message about the connection itself (heartbeat, resync, pong, stats, error)."""
    return LiveMessage(
        event_type=kind,
        session_id=None,
        user_id=None,
        data=data or {},
        timestamp=datetime.now(UTC),
        cursor=cursor,
    )


def render(message: LiveMessage, cursor: str | None) -> str:
    return _encoder.encode(msgspec.structs.replace(message, cursor=cursor)).decode()


CursorOf = Callable[[Mapping[TopicPartition, int]], str]
"""The cursor of the feed's positions raised to a floor."""


def recursor(
    message: LiveMessage, cursor_of: CursorOf
) -> Callable[[Mapping[TopicPartition, int]], str]:
    """Renders `message` with the cursor `cursor_of` gives for a client's floor."""
    return lambda floor: render(message, cursor_of(floor))
