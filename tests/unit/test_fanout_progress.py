"""The live progress board: the latest state of each upload, bounded in memory."""

from __future__ import annotations

from datetime import timedelta

import msgspec

from consumers.fanout.progress import ProgressBoard
from schemas import UploadCompleted, UploadFailed, UploadStarted
from tests.samples import SAMPLES, T0
from tests.unit.fanout_fakes import upload_event


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_upload_goes_from_started_through_progress_to_completed() -> None:
    board = ProgressBoard()
    started = upload_event("started", "alice", "a1", 0)
    assert isinstance(started, UploadStarted)
    board.apply(started)
    owner, state = board.get("a1") or ("", None)
    assert owner == "alice"
    assert state is not None
    assert state.status == "uploading"
    assert state.bytes_uploaded == 0
    assert state.started_at == started.started_at

    progress = upload_event("progress", "alice", "a1", 1)
    board.apply(progress)
    _, state = board.get("a1") or ("", None)
    assert state is not None
    assert state.bytes_uploaded == 4_194_304
    assert state.percentage == 40.0
    assert state.upload_speed == 2_097_152.5
    assert state.estimated_completion == progress.occurred_at + timedelta(seconds=3)
    assert state.started_at == started.started_at

    done = msgspec.structs.replace(upload_event("completed", "alice", "a1", 2), duplicate_of=None)
    assert isinstance(done, UploadCompleted)
    board.apply(done)
    # A progress record read after the completion does not undo it.
    board.apply(upload_event("progress", "alice", "a1", 1))
    _, state = board.get("a1") or ("", None)
    assert state is not None
    assert state.status == "completed"
    assert state.percentage == 100.0
    assert state.video_id == done.video_id
    assert state.redirect_url == f"/dashboard/videos/{done.video_id}/results"
    assert state.completed_at == T0


def test_failures_and_cancels_say_why() -> None:
    board = ProgressBoard()
    failed = SAMPLES["ingest.upload.failed"]
    assert isinstance(failed, UploadFailed)
    board.apply(failed)
    _, state = board.get(failed.upload_id) or ("", None)
    assert state is not None
    assert state.status == "failed"
    assert state.error_code == failed.error_code
    board.apply(upload_event("cancelled", "bob", "b1", 4))
    _, state = board.get("b1") or ("", None)
    assert state is not None
    assert state.status == "cancelled"
    assert state.error_code == "CANCELLED"


def test_finished_uploads_are_forgotten_after_a_while_and_the_count_is_bounded() -> None:
    clock = Clock()
    board = ProgressBoard(keep_finished=60, max_uploads=3, clock=clock)
    board.apply(upload_event("completed", "alice", "done", 5))
    clock.now = 30
    board.apply(upload_event("progress", "alice", "going", 1))
    clock.now = 61
    assert board.get("done") is None
    assert board.get("going") is not None  # its last event is 31 s old: kept
    clock.now = 91
    assert board.get("going") is None  # nothing for a minute: forgotten
    board.apply(upload_event("progress", "alice", "going", 2))
    assert board.get("going") is not None
    for n in range(4):
        board.apply(upload_event("progress", "alice", f"u{n}", 1))
    assert len(board) == 3
    assert board.get("going") is None  # the least recently updated went first
    assert board.get("u3") is not None


def test_other_events_are_ignored() -> None:
    board = ProgressBoard()
    board.apply(SAMPLES["ingest.quota.updated"])
    board.apply(SAMPLES["ingest.detection.completed"])
    assert len(board) == 0
