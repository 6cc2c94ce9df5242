"""The events of a stored video's analysis, and what they report about it.

`DetectionCompleted` carries the stream's facts (`VideoInfo`) and what was
measured on its sampled frames (`FrameMeasurements`); `DetectionFailed` says
why no analysis was made. Pure types: constraints are checked on decode (see
`schemas.events` for how these types may change).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from schemas.events.base import (
    AnalysisId,
    Count,
    EventBase,
    Seconds,
    Sha256Hex,
    UploadId,
    UserId,
    VideoId,
)

__all__ = [
    "DetectionCompleted",
    "DetectionEvent",
    "DetectionFailed",
    "FrameMeasurements",
    "VideoInfo",
]


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
