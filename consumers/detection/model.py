"""The operator's ONNX model: loaded once per worker with `cv2.dnn`, scoring face crops.

The model is whatever the operator configures (`INGEST_DETECTION_MODEL`);
this service does not know what its output means, so it reports the raw
value (output `output_index` of each crop: the mean and the highest over the
crops) and never turns it into "real" or "fake". `identity` (file name and
the start of its SHA-256) goes with every result, so a result reused for a
duplicate file is only reused under the same model.

How it fails: `load_model` raises ModelNotUsable when the file is missing, is
not an ONNX model OpenCV can read, or does not accept an input of the
configured size: the consumer checks this at start and refuses to run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from consumers.detection.measurements import Box, Frame
from infra.env import SettingsError

NO_MODEL_NOTE = "no model is configured: faces were counted, nothing was scored or judged"
MODEL_NOTE = (
    "raw output of the operator's model on the face crops; its meaning is the model's, "
    "this service makes no real or fake claim"
)


class ModelNotUsable(SettingsError):
    """The configured model cannot be used; the message says why, for the operator."""


@dataclass(frozen=True, kw_only=True)
class ModelSettings:
    path: Path
    input_width: int = 224
    input_height: int = 224
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0 / 255.0
    swap_rb: bool = True
    output_index: int = 0


def identity(settings: ModelSettings) -> str:
    digest = hashlib.sha256(settings.path.read_bytes()).hexdigest()
    return f"{settings.path.name}@sha256:{digest[:16]}"


def load_model(settings: ModelSettings) -> Any:
    """The network, checked with one blank input of the configured size."""
    if not settings.path.is_file():
        raise ModelNotUsable(f"the detection model {settings.path} does not exist")
    try:
        net = cv2.dnn.readNetFromONNX(str(settings.path))
    except cv2.error as error:
        raise ModelNotUsable(
            f"the detection model {settings.path} is not an ONNX model OpenCV can read "
            f"(INGEST_DETECTION_MODEL must name a .onnx file): {_first_line(error)}"
        ) from None
    blank = np.zeros((settings.input_height, settings.input_width, 3), np.uint8)
    try:
        scores(net, settings, [blank])
    except (cv2.error, IndexError) as error:
        raise ModelNotUsable(
            f"the detection model {settings.path} does not take a "
            f"{settings.input_width}x{settings.input_height} image or has no output "
            f"{settings.output_index}: {_first_line(error)}"
        ) from None
    return net


def crops(frame: Frame, faces: Sequence[Box]) -> list[Frame]:
    return [frame[y : y + h, x : x + w] for (x, y, w, h) in faces if w > 0 and h > 0]


def scores(net: Any, settings: ModelSettings, images: Sequence[Frame]) -> list[float]:
    """The model's raw output `output_index` for each image, resized to the input size."""
    if not images:
        return []
    blob = cv2.dnn.blobFromImages(
        list(images),
        scalefactor=settings.scale,
        size=(settings.input_width, settings.input_height),
        mean=settings.mean,
        swapRB=settings.swap_rb,
        crop=False,
    )
    net.setInput(blob)
    output = np.asarray(net.forward()).reshape(len(images), -1)
    return [float(row[settings.output_index]) for row in output]


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
