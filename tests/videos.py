"""Test videos, written by OpenCV's own encoders, and a tiny ONNX model: for the detection tests.

Every container the opencv-python-headless wheel can write: mp4 and mov
(MPEG-4 part 2), avi (MJPEG), mkv (FFV1), webm (VP8). Writing is synchronous:
call these from a test's setup or through `asyncio.to_thread`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np

# container -> (FourCC written, FourCC OpenCV reads back)
CONTAINERS: Final = {
    "mp4": ("mp4v", "FMP4"),
    "mov": ("mp4v", "FMP4"),
    "avi": ("MJPG", "MJPG"),
    "mkv": ("FFV1", "FFV1"),
    "webm": ("VP80", "VP80"),
}


def write_video(
    path: Path,
    frames: list[np.ndarray[Any, Any]] | None = None,
    *,
    fourcc: str | None = None,
    fps: float = 10.0,
    count: int = 20,
    size: tuple[int, int] = (160, 120),
) -> Path:
    """Write `frames` (or `count` frames of a moving gradient of `size`) to `path`."""
    if frames is None:
        width, height = size
        ramp = np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))
        frames = [cv2.merge([np.roll(ramp, 3 * i, axis=1)] * 3) for i in range(count)]
    height, width = frames[0].shape[:2]
    code = fourcc or CONTAINERS[path.suffix.lstrip(".")][0]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*code), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {code} into {path.suffix}")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    return path


def astronaut_frames(count: int = 20) -> list[np.ndarray[Any, Any]]:
    """scikit-image's astronaut (a frontal face), panning slowly across a 640x480 frame."""
    from skimage import data

    # scikit-image ships no annotations for its sample images.
    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)  # type: ignore[no-untyped-call]
    frames = []
    for i in range(count):
        frame = np.full((480, 640, 3), 40, np.uint8)
        x = 20 + 4 * i
        frame[0:480, x : x + 512] = face[16:496, : min(512, 640 - x)]
        frames.append(frame)
    return frames


def noise_frames(count: int = 20, size: tuple[int, int] = (320, 240)) -> list[np.ndarray[Any, Any]]:
    rng = np.random.default_rng(7)
    width, height = size
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def tiny_onnx_model(path: Path, size: int = 32) -> Path:
    """An ONNX model scoring an image by the mean of its (scaled) pixels: output [N, 1, 1, 1]."""
    import onnx
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])
    score = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1, 1, 1])
    mean = helper.make_node("ReduceMean", ["image"], ["score"], axes=[1, 2, 3], keepdims=1)
    graph = helper.make_graph([mean], "mean-brightness", [image], [score])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
