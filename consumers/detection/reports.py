"""The detection events and the results page's document, built from an upload and an analysis.

Pure functions: no I/O. A completed detection names the model that ran (or
says that none did, and then carries no score); a reused one keeps the
original's analysis under the new upload's ids and names the analysis it
came from.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec

from consumers.detection.analysis import Analysis
from consumers.detection.model import MODEL_NOTE, NO_MODEL_NOTE
from schemas import DetectionCompleted, DetectionFailed, UploadCompleted
from schemas.api import DetectionStatus, VideoResults

Outcome = DetectionCompleted | DetectionFailed


def completed(upload: UploadCompleted, analysis: Analysis, model: str | None) -> DetectionCompleted:
    valid = analysis.video is not None
    return DetectionCompleted(
        upload_id=upload.upload_id,
        user_id=upload.user_id,
        video_id=upload.video_id,
        analysis_id=upload.analysis_id,
        sha256=upload.sha256,
        s3_bucket=upload.s3_bucket,
        s3_key=upload.s3_key,
        is_valid_video=valid,
        video=analysis.video,
        frames_sampled=analysis.measurements.frames_sampled if analysis.measurements else 0,
        faces_detected=analysis.faces_detected,
        model=model if valid else None,
        model_score=analysis.model_score,
        findings=analysis.findings,
        invalid_code=analysis.invalid_code,
        measurements=analysis.measurements,
        model_faces_scored=analysis.model_faces_scored,
        model_score_max=analysis.model_score_max,
        model_note=(MODEL_NOTE if model else NO_MODEL_NOTE) if valid else None,
    )


def reused(earlier: DetectionCompleted, upload: UploadCompleted) -> DetectionCompleted:
    """The earlier outcome of the same file, as this upload's own event."""
    return msgspec.structs.replace(
        earlier,
        event_id=uuid.uuid4().hex,
        occurred_at=datetime.now(UTC),
        **_ids(upload),
        s3_bucket=upload.s3_bucket,
        s3_key=upload.s3_key,
        reused_from=earlier.reused_from or earlier.analysis_id,
    )


def _ids(upload: UploadCompleted) -> dict[str, str]:
    return {
        "upload_id": upload.upload_id,
        "user_id": upload.user_id,
        "video_id": upload.video_id,
        "analysis_id": upload.analysis_id,
    }


def failed(upload: UploadCompleted, code: str, message: str) -> DetectionFailed:
    return DetectionFailed(
        upload_id=upload.upload_id,
        user_id=upload.user_id,
        video_id=upload.video_id,
        analysis_id=upload.analysis_id,
        error_code=code,
        error_message=message,
        retriable=False,
        sha256=upload.sha256,
    )


def page(
    upload: UploadCompleted, status: DetectionStatus, outcome: Outcome | None = None
) -> VideoResults:
    return VideoResults(
        video_id=upload.video_id,
        upload_id=upload.upload_id,
        analysis_id=upload.analysis_id,
        filename=upload.filename,
        size=upload.size_bytes,
        sha256=upload.sha256,
        format=upload.format,
        uploaded_at=upload.completed_at,
        status=status,
        detection=outcome,
        updated_at=datetime.now(UTC),
    )
