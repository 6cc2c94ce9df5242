"""What is measured on the sampled frames (see `validation`): faces and sharpness.

Plain synchronous functions of decoded frames (OpenCV and numpy, no I/O),
run in a worker process. Faces are found by the frontal-face Haar cascade
shipped in the OpenCV wheel, on a grey copy of the frame scaled down to at
most `scan_width` pixels wide (the cascade's cost grows with the area: on
this machine about 0.03 s a frame at 320 px, 0.09 s at 480, 0.16 s at 640),
and reported in the frame's own pixels. The summary is a set of
measurements, not a verdict.

How it fails: a cascade file that will not load raises RuntimeError (the
worker cannot measure anything).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import cv2
import cv2.data
import numpy as np

from schemas import FrameMeasurements

DEFAULT_SCAN_WIDTH: Final = 480
CASCADE_FILE: Final = "haarcascade_frontalface_default.xml"

Box = tuple[int, int, int, int]
"""x, y, width, height in the frame's pixels."""
Frame = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Sample:
    seconds: float
    width: int
    height: int
    faces: tuple[Box, ...]
    sharpness: float


def load_cascade() -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / CASCADE_FILE
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise RuntimeError(f"the Haar cascade {path} did not load")
    return cascade


def find_faces(
    grey: Frame, cascade: cv2.CascadeClassifier, scan_width: int = DEFAULT_SCAN_WIDTH
) -> tuple[Box, ...]:
    width = grey.shape[1]
    scale = min(1.0, scan_width / width)
    small = grey if scale == 1.0 else cv2.resize(grey, None, fx=scale, fy=scale)
    smallest = max(20, round(min(small.shape[:2]) / 24))
    found = cascade.detectMultiScale(
        small, scaleFactor=1.2, minNeighbors=4, minSize=(smallest, smallest)
    )
    return tuple(
        (round(x / scale), round(y / scale), round(w / scale), round(h / scale))
        for (x, y, w, h) in found
    )


def sharpness(grey: Frame) -> float:
    """Variance of the Laplacian: high for crisp edges, low for blur (depends on content too)."""
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def measure(
    seconds: float,
    frame: Frame,
    cascade: cv2.CascadeClassifier,
    scan_width: int = DEFAULT_SCAN_WIDTH,
) -> Sample:
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    height, width = grey.shape[:2]
    return Sample(seconds, width, height, find_faces(grey, cascade, scan_width), sharpness(grey))


def largest(faces: Sequence[Box]) -> Box | None:
    return max(faces, key=lambda box: box[2] * box[3], default=None)


def box_jitter(samples: Sequence[Sample]) -> float | None:
    """Mean move of the largest face's centre between consecutive samples that both have one,
    as a share of the frame's diagonal; None when no two consecutive samples have a face."""
    moves = []
    for before, after in itertools.pairwise(samples):
        first, second = largest(before.faces), largest(after.faces)
        if first is None or second is None:
            continue
        dx = (second[0] + second[2] / 2) - (first[0] + first[2] / 2)
        dy = (second[1] + second[3] / 2) - (first[1] + first[3] / 2)
        moves.append(math.hypot(dx, dy) / math.hypot(after.width, after.height))
    return sum(moves) / len(moves) if moves else None


def summarise(samples: Sequence[Sample]) -> FrameMeasurements:
    counts = [len(sample.faces) for sample in samples]
    biggest = largest([face for sample in samples for face in sample.faces])
    values = [sample.sharpness for sample in samples]
    return FrameMeasurements(
        frames_sampled=len(samples),
        frames_with_faces=sum(1 for count in counts if count),
        faces_per_frame_mean=sum(counts) / len(counts) if counts else 0.0,
        faces_per_frame_max=max(counts, default=0),
        largest_face_width=biggest[2] if biggest else 0,
        largest_face_height=biggest[3] if biggest else 0,
        face_box_jitter_mean=box_jitter(samples),
        sharpness_mean=sum(values) / len(values) if values else None,
        sharpness_min=min(values, default=None),
    )
