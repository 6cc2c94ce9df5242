"""Live progress of recent uploads, as the feed reads their events: the REST view's state.

`ProgressBoard.apply` folds each upload event into the upload's latest
state; `get` answers `GET /v1/uploads/{id}/progress` with it and the owner.
An event older (by `sequence`) than what the board holds is ignored, so a
progress record read after the completion does not turn it back into
"uploading". Memory is bounded twice: an upload is forgotten `keep_finished`
seconds after its last event (a finished one, or one whose events stopped: a
resumable upload paused that long comes back with its next event), and
beyond `max_uploads` the least recently updated upload is forgotten first.

How it fails: never; events of other kinds are ignored.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import msgspec

from consumers.fanout.messages import results_url
from schemas import (
    Event,
    UploadCancelled,
    UploadCompleted,
    UploadEvent,
    UploadFailed,
    UploadProgress,
    UploadStarted,
)
from schemas.live import UploadProgressResponse


@dataclass
class _Entry:
    user_id: str
    sequence: int
    state: UploadProgressResponse
    updated_at: float


class ProgressBoard:
    def __init__(
        self,
        *,
        keep_finished: float = 3600.0,
        max_uploads: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keep_finished = keep_finished
        self._max_uploads = max_uploads
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, session_id: str) -> tuple[str, UploadProgressResponse] | None:
        """The owner and the latest state of an upload; None when unknown or forgotten."""
        self._forget_expired()
        entry = self._entries.get(session_id)
        return None if entry is None else (entry.user_id, entry.state)

    def apply(self, event: Event) -> None:
        if not isinstance(event, UploadEvent):
            return
        entry = self._entries.get(event.upload_id)
        if entry is not None and event.sequence <= entry.sequence:
            return
        state = _next_state(entry.state if entry is not None else None, event)
        if state is None:
            return
        self._entries[event.upload_id] = _Entry(event.user_id, event.sequence, state, self._clock())
        self._entries.move_to_end(event.upload_id)
        while len(self._entries) > self._max_uploads:
            self._entries.popitem(last=False)
        self._forget_expired()

    def _forget_expired(self) -> None:
        # Entries are kept in the order of their last update: the oldest is first.
        deadline = self._clock() - self._keep_finished
        while self._entries:
            entry = next(iter(self._entries.values()))
            if entry.updated_at > deadline:
                return
            self._entries.popitem(last=False)


def _next_state(
    before: UploadProgressResponse | None, event: UploadEvent
) -> UploadProgressResponse | None:
    base = before or UploadProgressResponse(
        session_id=event.upload_id,
        percentage=0.0 if event.total_bytes else None,
        bytes_uploaded=0,
        total_bytes=event.total_bytes,
        upload_speed=0.0,
        estimated_completion=None,
        status="uploading",
        filename=event.filename,
        started_at=None,
        last_updated=event.occurred_at,
    )
    common = {"last_updated": event.occurred_at, "filename": event.filename or base.filename}
    if isinstance(event, UploadStarted):
        return msgspec.structs.replace(base, **common, started_at=event.started_at)
    if isinstance(event, UploadProgress):
        eta = event.eta_seconds
        return msgspec.structs.replace(
            base,
            **common,
            bytes_uploaded=event.bytes_received,
            total_bytes=event.total_bytes,
            percentage=event.percentage,
            upload_speed=event.speed_bps,
            estimated_completion=(
                event.occurred_at + timedelta(seconds=eta) if eta is not None else None
            ),
        )
    if isinstance(event, UploadCompleted):
        return msgspec.structs.replace(
            base,
            **common,
            status="completed",
            bytes_uploaded=event.size_bytes,
            total_bytes=event.total_bytes if event.total_bytes is not None else event.size_bytes,
            percentage=100.0,
            estimated_completion=None,
            started_at=event.started_at,
            completed_at=event.completed_at,
            video_id=event.video_id,
            analysis_id=event.analysis_id,
            redirect_url=results_url(event.video_id),
        )
    if isinstance(event, UploadFailed):
        return msgspec.structs.replace(
            base,
            **common,
            status="failed",
            bytes_uploaded=event.bytes_received,
            estimated_completion=None,
            error_code=event.error_code,
            error_message=event.error_message,
            completed_at=event.occurred_at,
        )
    if isinstance(event, UploadCancelled):
        return msgspec.structs.replace(
            base,
            **common,
            status="cancelled",
            bytes_uploaded=event.bytes_received,
            estimated_completion=None,
            error_code="CANCELLED",
            error_message=event.reason or "the upload was cancelled",
            completed_at=event.occurred_at,
        )
    return None
