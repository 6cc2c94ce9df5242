"""The detection's pure analysis functions, on videos OpenCV writes into a temporary directory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from consumers.detection import analysis, measurements, model, validation
from consumers.detection.measurements import Sample
from consumers.detection.pool import PriorityGate
from schemas import VideoInfo
from tests.videos import (
    CONTAINERS,
    astronaut_frames,
    noise_frames,
    tiny_onnx_model,
    write_video,
)


@pytest.mark.parametrize(
    ("head", "container"),
    [
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00", "mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00", "mov"),
        (b"RIFF\x10\x00\x00\x00AVI LIST", "avi"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska", "mkv"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "webm"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", None),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", None),
        (b"", None),
    ],
)
def test_the_container_is_named_by_its_magic_bytes(head: bytes, container: str | None) -> None:
    assert validation.sniff_container(head) == container


def test_a_fourcc_number_reads_as_its_four_characters() -> None:
    assert validation.fourcc_text(float(int.from_bytes(b"avc1", "little"))) == "AVC1"
    assert validation.fourcc_text(0.0) == ""


def info(**changes: object) -> VideoInfo:
    fields: dict[str, object] = {
        "duration_seconds": 10.0,
        "fps": 30.0,
        "width": 1280,
        "height": 720,
        "codec": "AVC1",
        "frame_count": 300,
        "frames_decoded": 300,
        "rotation_degrees": 0,
    }
    fields.update(changes)
    return VideoInfo(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "flags"),
    [
        ({}, []),
        ({"fps": 4.0}, ["LOW_FPS"]),
        ({"fps": 240.0}, ["HIGH_FPS"]),
        ({"width": 4097}, ["LARGE_FRAME"]),
        ({"height": 8192}, ["LARGE_FRAME"]),
        ({"rotation_degrees": 90}, ["ROTATED"]),
        ({"rotation_degrees": 360}, []),
        ({"frames_decoded": 298}, []),  # within 2 frames
        ({"frames_decoded": 290}, ["FRAME_COUNT_MISMATCH"]),
        ({"frame_count": None, "frames_decoded": 5}, []),
    ],
)
def test_unusual_but_valid_input_is_flagged(changes: dict[str, object], flags: list[str]) -> None:
    assert validation.flags_of(info(**changes), tolerance=0.02) == flags


def sample(faces: tuple[tuple[int, int, int, int], ...], sharp: float = 10.0) -> Sample:
    return Sample(0.0, 300, 400, faces, sharp)  # diagonal 500


def test_the_summary_counts_faces_and_measures_their_jitter_and_the_sharpness() -> None:
    samples = [
        sample(((0, 0, 10, 10), (100, 100, 50, 40)), 4.0),
        sample((), 8.0),
        sample(((130, 140, 50, 40),), 6.0),  # largest face's centre moved by (30, 40): 50 px
        sample(((100, 100, 50, 40),), 12.0),
    ]
    summary = measurements.summarise(samples)
    assert summary.frames_sampled == 4
    assert summary.frames_with_faces == 3
    assert summary.faces_per_frame_mean == 1.0
    assert summary.faces_per_frame_max == 2
    assert (summary.largest_face_width, summary.largest_face_height) == (50, 40)
    # Only the last two samples are consecutive with a face each: 50 / 500.
    assert summary.face_box_jitter_mean == pytest.approx(0.1)
    assert summary.sharpness_mean == 7.5
    assert summary.sharpness_min == 4.0


def test_a_summary_of_nothing_measured_says_so() -> None:
    summary = measurements.summarise([])
    assert summary.frames_sampled == 0
    assert summary.face_box_jitter_mean is None
    assert summary.sharpness_mean is None


def test_sharpness_is_higher_for_edges_than_for_a_flat_frame() -> None:
    flat = np.full((64, 64), 128, np.uint8)
    edges = np.zeros((64, 64), np.uint8)
    edges[:, ::2] = 255
    assert measurements.sharpness(flat) == 0.0
    assert measurements.sharpness(edges) > 1000


@pytest.fixture(scope="module")
def worker() -> analysis.Worker:
    return analysis.load_worker(analysis.AnalysisSettings())


@pytest.mark.parametrize("container", sorted(CONTAINERS))
def test_every_container_the_wheel_writes_is_a_valid_video(
    tmp_path: Path, worker: analysis.Worker, container: str
) -> None:
    path = write_video(tmp_path / f"clip.{container}", fps=10.0, count=25)
    found = analysis.analyse(path, worker)
    assert found.invalid_code is None, found.findings
    video = found.video
    assert video is not None
    assert (video.width, video.height, video.fps) == (160, 120, 10.0)
    assert video.frames_decoded == 25
    assert video.duration_seconds == pytest.approx(2.5)
    assert video.container == container
    assert video.codec == CONTAINERS[container][1]
    assert found.measurements is not None
    assert found.measurements.frames_sampled == 3  # at 0 s, 1 s and 2 s


def test_a_renamed_png_is_not_a_video(tmp_path: Path, worker: analysis.Worker) -> None:
    import cv2

    png = tmp_path / "picture.mp4"
    png.write_bytes(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    assert analysis.analyse(png, worker).invalid_code == "NOT_A_VIDEO"


def test_a_cut_mp4_is_corrupt_and_a_short_one_too_short(
    tmp_path: Path, worker: analysis.Worker
) -> None:
    whole = write_video(tmp_path / "whole.mp4", count=40).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])
    assert analysis.analyse(cut, worker).invalid_code == "CORRUPT"
    short = write_video(tmp_path / "short.mp4", fps=20.0, count=1)  # 0.05 s
    assert analysis.analyse(short, worker).invalid_code == "TOO_SHORT"


def test_faces_are_found_in_the_astronaut_and_not_in_noise(
    tmp_path: Path, worker: analysis.Worker
) -> None:
    face = analysis.analyse(write_video(tmp_path / "a.avi", astronaut_frames()), worker)
    noise = analysis.analyse(write_video(tmp_path / "n.avi", noise_frames()), worker)
    assert face.faces_detected >= 1
    assert face.measurements is not None
    assert face.measurements.largest_face_width > 80
    assert noise.faces_detected == 0
    assert face.model_score is None  # no model configured


def test_an_onnx_model_scores_the_face_crops(tmp_path: Path) -> None:
    settings = model.ModelSettings(
        path=tiny_onnx_model(tmp_path / "m.onnx"), input_width=32, input_height=32
    )
    worker = analysis.load_worker(analysis.AnalysisSettings(model=settings))
    found = analysis.analyse(write_video(tmp_path / "a.avi", astronaut_frames()), worker)
    assert found.model_faces_scored == found.faces_detected >= 1
    assert found.model_score is not None
    assert 0 < found.model_score < 1
    assert found.model_score_max is not None
    assert found.model_score_max >= found.model_score


def test_a_model_that_is_not_onnx_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"this is a pickle, honest")
    with pytest.raises(model.ModelNotUsable, match="is not an ONNX model"):
        model.load_model(model.ModelSettings(path=bogus))
    with pytest.raises(model.ModelNotUsable, match="does not exist"):
        model.load_model(model.ModelSettings(path=tmp_path / "missing.onnx"))


async def test_the_gate_lets_waiters_in_by_priority_then_by_arrival() -> None:
    gate = PriorityGate(1)
    order: list[str] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.slot(5):
            await release.wait()

    async def waiter(name: str, priority: int) -> None:
        async with gate.slot(priority):
            order.append(name)

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiters = [
        asyncio.create_task(waiter(name, priority))
        for name, priority in (("low", 1), ("urgent-a", 10), ("mid", 5), ("urgent-b", 10))
    ]
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(waiter("cancelled", 10))
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await asyncio.gather(first, *waiters)
    assert order == ["urgent-a", "urgent-b", "mid", "low"]
    assert gate.waiting == 0
