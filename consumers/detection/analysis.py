"""One file's whole analysis, as a worker process runs it: validate and sample, measure, score.

`analyse` is a plain function of a local file and what a worker loaded once
(`Worker`: the Haar cascade and the operator's model, if any): no asyncio,
no Kafka, no S3. A worker process calls `start_worker` once when it starts
(the pool's initializer) and `analyse_in_worker` for each file.

How it fails: bad input never raises (it is an `Analysis` with an
`invalid_code`); `start_worker` raises ModelNotUsable or RuntimeError when
the model or the cascade will not load; an OSError reading the file
propagates; a decoder that hangs or kills the process is the pool's to handle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import msgspec

from consumers.detection import measurements, model, validation
from schemas import FrameMeasurements, VideoInfo

_FLAG_FINDINGS = {
    "LOW_FPS": "frame rate under 5 fps",
    "HIGH_FPS": "frame rate over 120 fps",
    "LARGE_FRAME": "a side over 4096 px",
    "ROTATED": "the stream carries rotation metadata",
}


@dataclass(frozen=True, kw_only=True)
class AnalysisSettings:
    sample_every_seconds: float = 1.0
    scan_width: int = measurements.DEFAULT_SCAN_WIDTH
    limits: validation.ValidationLimits = field(default_factory=validation.ValidationLimits)
    model: model.ModelSettings | None = None


class Analysis(msgspec.Struct, frozen=True, kw_only=True):
    """What a worker found; picklable, so it crosses the process boundary as it is."""

    video: VideoInfo | None
    container: str | None = None
    invalid_code: str | None = None
    findings: list[str] = msgspec.field(default_factory=list)
    measurements: FrameMeasurements | None = None
    faces_detected: int = 0
    model_faces_scored: int = 0
    model_score: float | None = None
    model_score_max: float | None = None


@dataclass(frozen=True)
class Worker:
    settings: AnalysisSettings
    cascade: Any
    net: Any | None


def load_worker(settings: AnalysisSettings) -> Worker:
    net = model.load_model(settings.model) if settings.model is not None else None
    return Worker(settings, measurements.load_cascade(), net)


def findings_of(video: VideoInfo) -> list[str]:
    found = [_FLAG_FINDINGS[flag] for flag in video.flags if flag in _FLAG_FINDINGS]
    if "FRAME_COUNT_MISMATCH" in video.flags:
        found.append(
            f"the header reports {video.frame_count} frames, {video.frames_decoded} decoded"
        )
    return found


def analyse(path: Path, worker: Worker) -> Analysis:
    settings = worker.settings
    samples: list[measurements.Sample] = []
    crop_scores: list[float] = []

    def visit(seconds: float, frame: validation.Frame) -> None:
        sample = measurements.measure(seconds, frame, worker.cascade, settings.scan_width)
        samples.append(sample)
        if worker.net is not None and settings.model is not None and sample.faces:
            crops = model.crops(frame, sample.faces)
            crop_scores.extend(model.scores(worker.net, settings.model, crops))

    checked = validation.validate(path, settings.limits, visit, settings.sample_every_seconds)
    if isinstance(checked, validation.Invalid):
        return Analysis(
            video=None,
            container=checked.container,
            invalid_code=checked.code,
            findings=[checked.message],
        )
    return Analysis(
        video=checked,
        container=checked.container,
        findings=findings_of(checked),
        measurements=measurements.summarise(samples),
        faces_detected=sum(len(sample.faces) for sample in samples),
        model_faces_scored=len(crop_scores),
        model_score=sum(crop_scores) / len(crop_scores) if crop_scores else None,
        model_score_max=max(crop_scores, default=None),
    )


_worker: Worker | None = None


def start_worker(settings: AnalysisSettings) -> None:
    """The pool's initializer: load the cascade and the model once for this process."""
    global _worker
    # One video per process: the pool runs several at once, so OpenCV's own threads
    # would only compete with the other workers for the same cores.
    cv2.setNumThreads(1)
    _worker = load_worker(settings)


def worker_ready() -> bool:
    return _worker is not None


def analyse_in_worker(path: str) -> Analysis:
    if _worker is None:
        raise RuntimeError("start_worker was not called in this process")
    return analyse(Path(path), _worker)
