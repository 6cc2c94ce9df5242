"""One example of every event type, with every field set, shared by the schema tests.

Also `upload_sample` (an upload event typed as one of the `Event` union, so it
goes wherever an `Event` does) and `pending_results`: the document the results
route answers for a video whose analysis has not finished.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

from schemas import (
    AppliedOffset,
    CountedUpload,
    DetectionCompleted,
    DetectionFailed,
    Event,
    FrameMeasurements,
    QuotaLimitsSet,
    QuotaUpdated,
    UploadCancelled,
    UploadCompleted,
    UploadFailed,
    UploadProgress,
    UploadStarted,
    VideoInfo,
)
from schemas.api import VideoResults

USER = "user-42"
UPLOAD = "upl-7"
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
SOURCE = "/ingest/test-host"
T0 = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)

UPLOAD_FIELDS: dict[str, Any] = {
    "upload_id": UPLOAD,
    "user_id": USER,
    "filename": "clip.mp4",
    "content_type": "video/mp4",
    "format": "mp4",
    "protocol": "tus",
    "priority": 8,
    "auto_analyze": False,
    "dashboard_context": {"page": "library", "tab": 2},
    "metadata": {"camera": "front", "tags": ["a", "b"]},
    "s3_bucket": "videos",
    "s3_key": f"dashboard-uploads/{USER}/{UPLOAD}/clip.mp4",
    "total_bytes": 10_485_760,
    "occurred_at": T0,
}
DETECTION_FIELDS: dict[str, Any] = {
    "upload_id": UPLOAD,
    "user_id": USER,
    "video_id": "vid-1",
    "analysis_id": "ana-1",
    "occurred_at": T0,
}

AnyUploadEvent: TypeAlias = (
    UploadStarted | UploadProgress | UploadCompleted | UploadFailed | UploadCancelled
)
"""The members of the `Event` union that are upload events (they all carry `upload_id`)."""

SAMPLES: dict[str, Event] = {
    "ingest.upload.started": UploadStarted(
        **UPLOAD_FIELDS, sequence=0, started_at=T0 - timedelta(seconds=1)
    ),
    "ingest.upload.progress": UploadProgress(
        **UPLOAD_FIELDS,
        sequence=3,
        bytes_received=4_194_304,
        percentage=40.0,
        speed_bps=2_097_152.5,
        eta_seconds=3.0,
        parts_stored=0,
    ),
    "ingest.upload.completed": UploadCompleted(
        **UPLOAD_FIELDS,
        sequence=9,
        video_id="vid-1",
        analysis_id="ana-1",
        size_bytes=10_485_760,
        sha256=SHA,
        etag='"3858f62230ac3c915f300c664312c63f-2"',
        parts=2,
        started_at=T0 - timedelta(seconds=5),
        completed_at=T0,
        duplicate_of="vid-0",
    ),
    "ingest.upload.failed": UploadFailed(
        **UPLOAD_FIELDS,
        sequence=4,
        error_code="STORAGE_ERROR",
        error_message="S3 answered 503 three times",
        bytes_received=8_388_608,
    ),
    "ingest.upload.cancelled": UploadCancelled(
        **UPLOAD_FIELDS, sequence=5, bytes_received=1024, reason="user cancelled"
    ),
    "ingest.detection.completed": DetectionCompleted(
        **DETECTION_FIELDS,
        sha256=SHA,
        s3_bucket="videos",
        s3_key=f"dashboard-uploads/{USER}/{UPLOAD}/clip.mp4",
        is_valid_video=True,
        video=VideoInfo(
            duration_seconds=12.5,
            fps=29.97,
            width=1920,
            height=1080,
            codec="avc1",
            frame_count=375,
            frames_decoded=374,
            container="mp4",
            rotation_degrees=90,
            flags=["ROTATED"],
        ),
        frames_sampled=16,
        faces_detected=3,
        model="faces-v2.onnx",
        model_score=0.125,
        reused_from="ana-0",
        findings=["decoded one frame fewer than reported"],
        invalid_code=None,
        measurements=FrameMeasurements(
            frames_sampled=16,
            frames_with_faces=2,
            faces_per_frame_mean=0.1875,
            faces_per_frame_max=2,
            largest_face_width=220,
            largest_face_height=230,
            face_box_jitter_mean=0.012,
            sharpness_mean=812.5,
            sharpness_min=640.0,
        ),
        model_faces_scored=3,
        model_score_max=0.25,
        model_note="raw output of the operator's model",
    ),
    "ingest.detection.failed": DetectionFailed(
        **DETECTION_FIELDS,
        error_code="S3_READ_FAILED",
        error_message="connection reset",
        retriable=True,
        sha256=SHA,
    ),
    "ingest.quota.updated": QuotaUpdated(
        user_id=USER,
        occurred_at=T0,
        period_start=datetime(2024, 5, 1, tzinfo=UTC),
        period_end=datetime(2024, 5, 31, tzinfo=UTC),
        bytes_used=10_485_760,
        bytes_limit=10 * 2**30,
        uploads_used=1,
        uploads_limit=100,
        updated_at=T0,
        counted_uploads=[CountedUpload(upload_id=UPLOAD, size_bytes=10_485_760)],
        unlisted_bytes=0,
        unlisted_uploads=0,
        admin_bytes_limit=None,
        admin_uploads_limit=100,
        applied_offsets=[AppliedOffset(topic="ingest.uploads", partition=3, offset=41)],
    ),
    "ingest.quota.limits_set": QuotaLimitsSet(
        user_id=USER, occurred_at=T0, bytes_limit=None, uploads_limit=500, set_by="admin-1"
    ),
}


def upload_sample(event_type: str) -> AnyUploadEvent:
    """The sample of an upload event type, e.g. `ingest.upload.started`."""
    event = SAMPLES[event_type]
    assert isinstance(
        event, UploadStarted | UploadProgress | UploadCompleted | UploadFailed | UploadCancelled
    )
    return event


def pending_results(video_id: str) -> VideoResults:
    """A video's results document while its analysis is pending."""
    return VideoResults(
        video_id=video_id,
        upload_id="up-1",
        analysis_id="ana-1",
        filename="clip.mp4",
        size=1234,
        sha256="a" * 64,
        format="mp4",
        uploaded_at=datetime(2026, 1, 2, tzinfo=UTC),
        status="pending",
    )
