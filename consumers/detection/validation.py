"""Is the file really a video: plain synchronous OpenCV on a local file, run in a worker process.

In order, each step able to end it with a stable code:

1. the container, by its magic bytes (mp4/mov `ftyp` at offset 4, avi
   `RIFF`....`AVI `, mkv/webm EBML `1A 45 DF A3`): NOT_A_VIDEO otherwise;
2. OpenCV's FFmpeg backend opens it: CORRUPT otherwise (an mp4 cut short
   has lost its index, for example);
3. the stream's codec (its FourCC) is one of `KNOWN_CODECS`: UNSUPPORTED_CODEC;
4. the header's dimensions and frame rate are plausible: CORRUPT otherwise;
5. every frame is decoded with `grab()` (decoded, not converted to BGR: the
   cheapest way to learn that each one decodes) and counted: no frame at all
   is CORRUPT, under half the frames the header reports is CORRUPT (the file
   was cut), a duration under `min_duration_seconds` is TOO_SHORT.

Sampling rides on that pass: about once every `sample_every` seconds the
frame just grabbed is also converted (`retrieve()`) and handed to `visit`.
Since counting decodes every frame anyway, this costs one colour conversion
per sample; seeking to each sample time afterwards instead would decode
from the keyframe before every sample a second time (measured on a 720p
MPEG-4 minute: about 3 s more per minute of video than this, see the README).

A valid video gets its `VideoInfo`, with flags for what is unusual but valid.
Rotation comes from the stream's display matrix, which OpenCV's FFmpeg
backend reports (`CAP_PROP_ORIENTATION_META`), so nothing beyond OpenCV is
needed for the facts checked here.

How it fails: it does not raise on bad input (cv2.error included, which
becomes CORRUPT); an OSError reading the file propagates. A decoder that
hangs or crashes the process is the caller's to stop (`consumers.detection.pool`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import cv2
import msgspec
import numpy as np

from schemas import VideoInfo

Frame = np.ndarray[Any, Any]
Visit = Callable[[float, Frame], None]
"""Called with a sampled frame (BGR) and its time in seconds."""

InvalidCode = Literal["NOT_A_VIDEO", "CORRUPT", "TOO_SHORT", "UNSUPPORTED_CODEC"]

# FourCCs (upper-cased) of the video codecs this service accepts, by family.
KNOWN_CODECS: Final = frozenset(
    {
        *("AVC1", "AVC3", "H264", "X264", "DAVC"),  # H.264
        *("HEVC", "HVC1", "HEV1", "H265", "X265"),  # H.265
        *("VP80", "VP90", "VP08", "VP09", "AV01"),  # VP8, VP9, AV1
        *("MP4V", "FMP4", "XVID", "DIVX", "DX50", "MPG4", "3IV2"),  # MPEG-4 part 2
        *("MPG1", "MPG2", "MPEG", "MP2V", "H263", "S263"),  # MPEG-1/2, H.263
        *("MJPG", "FFV1", "THEO", "WMV1", "WMV2", "WMV3", "WVC1"),
        *("APCN", "APCH", "APCS", "APCO", "AP4H", "AVDN", "DVH5"),  # ProRes, DNxHD
    }
)

LOW_FPS: Final = 5.0
HIGH_FPS: Final = 120.0
LARGE_SIDE: Final = 4096
# Beyond these the header is not describing a real stream.
MAX_SIDE: Final = 16384
MAX_FPS: Final = 1000.0
# Fewer decoded frames than this share of the header's count: the file was cut.
CUT_SHARE: Final = 0.5


@dataclass(frozen=True, kw_only=True)
class ValidationLimits:
    min_duration_seconds: float = 0.1
    # Decoded and reported frame counts may differ by this share (or 2 frames) unflagged.
    frame_count_tolerance: float = 0.02


@dataclass(frozen=True)
class Invalid:
    code: InvalidCode
    message: str
    container: str | None = None


def sniff_container(head: bytes) -> str | None:
    """The container named by the file's first bytes, or None."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        # The EBML header's DocType says which of the two Matroska flavours it is.
        return "webm" if b"webm" in head[:64] else "mkv"
    return None


def fourcc_text(value: float) -> str:
    """OpenCV's FourCC number as its four characters (upper-cased), '' when there is none."""
    raw = int(value).to_bytes(4, "little", signed=False)
    return raw.decode("latin-1").strip("\x00 ").upper()


def frame_count_differs(reported: int | None, decoded: int, tolerance: float) -> bool:
    if reported is None:
        return False
    return abs(reported - decoded) > max(2, round(reported * tolerance))


def flags_of(info: VideoInfo, tolerance: float) -> list[str]:
    """The flags of unusual but valid input (see `VideoInfo.flags`)."""
    flags = []
    if info.fps < LOW_FPS:
        flags.append("LOW_FPS")
    if info.fps > HIGH_FPS:
        flags.append("HIGH_FPS")
    if max(info.width, info.height) > LARGE_SIDE:
        flags.append("LARGE_FRAME")
    if info.rotation_degrees % 360:
        flags.append("ROTATED")
    if frame_count_differs(info.frame_count, info.frames_decoded, tolerance):
        flags.append("FRAME_COUNT_MISMATCH")
    return flags


def validate(
    path: Path, limits: ValidationLimits, visit: Visit | None = None, sample_every: float = 1.0
) -> VideoInfo | Invalid:
    with path.open("rb") as file:
        head = file.read(64)
    container = sniff_container(head)
    if container is None:
        return Invalid("NOT_A_VIDEO", "the file starts with no known video container signature")
    try:
        return _decode_all(path, container, limits, visit, sample_every)
    except cv2.error as error:
        return Invalid("CORRUPT", f"the decoder failed: {error}", container)


def _decode_all(
    path: Path,
    container: str,
    limits: ValidationLimits,
    visit: Visit | None,
    sample_every: float,
) -> VideoInfo | Invalid:
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            return Invalid("CORRUPT", f"the {container} container cannot be opened", container)
        codec = fourcc_text(capture.get(cv2.CAP_PROP_FOURCC))
        if codec not in KNOWN_CODECS:
            return Invalid(
                "UNSUPPORTED_CODEC",
                f"the video codec {codec or 'unknown'!r} is not supported",
                container,
            )
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
            return Invalid("CORRUPT", f"implausible frame size {width}x{height}", container)
        if not 0 < fps <= MAX_FPS:
            return Invalid("CORRUPT", f"implausible frame rate {fps:g}", container)
        reported = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        rotation = int(capture.get(cv2.CAP_PROP_ORIENTATION_META))
        step = max(1, round(fps * sample_every))
        decoded = 0
        while capture.grab():
            if visit is not None and decoded % step == 0:
                ok, frame = capture.retrieve()
                if ok and frame is not None:
                    visit(decoded / fps, frame)
            decoded += 1
    finally:
        capture.release()
    header_count = reported if reported > 0 else None
    if decoded == 0:
        return Invalid("CORRUPT", "no frame could be decoded", container)
    if header_count is not None and decoded < header_count * CUT_SHARE:
        return Invalid(
            "CORRUPT", f"only {decoded} of the {header_count} frames announced decode", container
        )
    duration = decoded / fps
    if duration < limits.min_duration_seconds:
        return Invalid(
            "TOO_SHORT",
            f"{duration:.3f} s of video, under the {limits.min_duration_seconds:g} s minimum",
            container,
        )
    info = VideoInfo(
        duration_seconds=duration,
        fps=fps,
        width=width,
        height=height,
        codec=codec,
        frame_count=header_count,
        frames_decoded=decoded,
        container=container,
        rotation_degrees=rotation,
    )
    return msgspec.structs.replace(info, flags=flags_of(info, limits.frame_count_tolerance))
