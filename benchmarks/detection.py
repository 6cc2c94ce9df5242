"""Detection cost: seconds of analysis per minute of 720p video, and videos per minute.

Part of `python -m benchmarks consumers`. A 1280x720, 30 fps MPEG-4 clip of
`seconds` seconds (a panning gradient with moving shapes and text, so the
encoder and the decoder see motion and edges, written once per run by
OpenCV) is analysed as the detection consumer analyses it: in its process
pool (`consumers.detection.pool.AnalysisPool`), one sample a second, faces
scanned at the default width, no model. Four figures:

- **seconds per video-minute**: one worker, one file at a time (the pool
  started beforehand), wall time per analysis scaled to a minute of video;
- **CPU seconds per video-minute**: the same analysis in a process of its
  own, timed by that process's CPU clock (`time.process_time`, all its
  threads): what the analysis costs whatever else the machine is doing,
  where the wall time above grows with the machine's load;
- **decode and count alone**: the `grab()` pass over every frame without
  sampling, in this process, for how much of the above is decoding;
- **videos per minute**: the pool at its default size (one worker per CPU),
  `2 x workers` analyses of the clip submitted at once.

Nothing here touches Kafka or S3: download and publishing are measured by
the quota part (the same runtime) and the write path's benchmarks. How it
fails: RuntimeError when OpenCV cannot write the clip; an analysis error
propagates.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.stats import spread
from consumers.detection.analysis import AnalysisSettings, analyse_in_worker, start_worker
from consumers.detection.pool import AnalysisPool
from consumers.detection.settings import DetectionSettings
from consumers.detection.validation import ValidationLimits, validate

WIDTH, HEIGHT, FPS = 1280, 720, 30


def write_clip(path: Path, seconds: float) -> Path:
    ramp = np.tile(np.linspace(30, 220, 2 * WIDTH, dtype=np.uint8), (HEIGHT, 1))
    scene = cv2.merge([ramp, np.roll(ramp, WIDTH // 3, axis=1), ramp[:, ::-1]])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError("detection: OpenCV cannot write an MPEG-4 clip here")
    try:
        for n in range(round(seconds * FPS)):
            frame = np.ascontiguousarray(scene[:, (4 * n) % WIDTH : (4 * n) % WIDTH + WIDTH])
            x, y = (37 * n) % (WIDTH - 200), (23 * n) % (HEIGHT - 200)
            cv2.rectangle(frame, (x, y), (x + 180, y + 120), (20, 200, 60), -1)
            cv2.circle(frame, (WIDTH - x - 1, HEIGHT - y - 1), 70, (200, 40, 40), -1)
            cv2.putText(frame, f"frame {n}", (40, 80), cv2.FONT_HERSHEY_SIMPLEX, 2, (255,) * 3, 3)
            writer.write(frame)
    finally:
        writer.release()
    return path


def _cpu_seconds(path: Path) -> float:
    """In a fresh process: the CPU time of one analysis, set up as a pool worker is."""
    start_worker(AnalysisSettings())
    started = time.process_time()
    analyse_in_worker(str(path))
    return time.process_time() - started


def _cpu_runs(path: Path, runs: int) -> list[float]:
    """`_cpu_seconds` `runs` times in one spawned process (blocking: call it in a thread)."""
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as process:
        return [process.submit(_cpu_seconds, path).result() for _ in range(runs)]


def _decode_and_count(path: Path) -> float:
    started = time.perf_counter()
    validate(path, ValidationLimits())
    return time.perf_counter() - started


async def _timed(pool: AnalysisPool, path: Path) -> float:
    started = time.perf_counter()
    await pool.analyse(path)
    return time.perf_counter() - started


async def measure(folder: Path, *, seconds: float, runs: int) -> dict[str, Any]:
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    clip = await asyncio.to_thread(write_clip, folder / "clip-720p.mp4", seconds)
    per_minute = 60.0 / seconds
    workers = DetectionSettings().workers
    single = AnalysisPool(AnalysisSettings(), workers=1, time_limit=3600)
    try:
        await single.start()
        alone = [await _timed(single, clip) for _ in range(runs)]
    finally:
        await single.close()
    decode = [await asyncio.to_thread(_decode_and_count, clip) for _ in range(runs)]
    cpu = await asyncio.to_thread(_cpu_runs, clip, runs)
    pool = AnalysisPool(AnalysisSettings(), workers=workers, time_limit=3600)
    rates = []
    try:
        await pool.start()
        for _ in range(runs):
            started = time.perf_counter()
            await asyncio.gather(*(pool.analyse(clip) for _ in range(2 * workers)))
            rates.append(2 * workers * 60 / (time.perf_counter() - started))
    finally:
        await pool.close()
    await asyncio.to_thread(clip.unlink)
    return {
        "video": {"width": WIDTH, "height": HEIGHT, "fps": FPS, "seconds": seconds},
        "workers": workers,
        "seconds_per_video_minute": spread([s * per_minute for s in alone]).as_json(),
        "cpu_seconds_per_video_minute": spread([s * per_minute for s in cpu]).as_json(),
        "decode_seconds_per_video_minute": spread([s * per_minute for s in decode]).as_json(),
        "videos_per_minute": spread(rates).as_json(),
    }
