"""The analysis pool's real worker processes: a worker that dies mid-file is reported and replaced,
a file past the time limit is stopped, and the pool goes on with the next file."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from consumers.detection.analysis import AnalysisSettings
from consumers.detection.pool import AnalysisPool, DecoderCrashed, DecoderTimedOut
from tests.videos import noise_frames, write_video

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pool")
    slow = write_video(folder / "slow.mp4", noise_frames(400, (640, 480)), fps=30.0)
    quick = write_video(folder / "quick.avi", count=10)
    return slow, quick


@pytest.fixture
async def pool() -> AsyncIterator[AnalysisPool]:
    started = AnalysisPool(AnalysisSettings(), workers=1, time_limit=60)
    try:
        await started.start()
        yield started
    finally:
        await started.close()


def spawned_workers() -> list[int]:
    """This process's children started by multiprocessing's spawn (the pool's workers)."""
    children: list[int] = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as listed:
            children += [int(pid) for pid in listed.read().split()]
    workers = []
    for pid in children:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if b"spawn_main" in cmdline.read():
                    workers.append(pid)
        except FileNotFoundError:
            continue
    return workers


async def test_a_worker_killed_mid_file_is_reported_and_replaced(
    pool: AnalysisPool, files: tuple[Path, Path]
) -> None:
    slow, quick = files
    [worker] = await asyncio.to_thread(spawned_workers)
    running = asyncio.create_task(pool.analyse(slow))
    await asyncio.sleep(0.5)  # the worker is decoding the slow file
    os.kill(worker, signal.SIGKILL)
    with pytest.raises(DecoderCrashed, match="died"):
        await running
    found = await pool.analyse(quick)
    assert found.video is not None, "a new worker took the next file"
    assert await asyncio.to_thread(spawned_workers) != [worker]


async def test_a_file_past_the_time_limit_is_stopped_and_the_next_one_analysed(
    files: tuple[Path, Path],
) -> None:
    slow, quick = files
    pool = AnalysisPool(AnalysisSettings(), workers=1, time_limit=0.3)
    try:
        await pool.start()
        with pytest.raises(DecoderTimedOut, match=r"0\.3 s"):
            await pool.analyse(slow)
        found = await pool.analyse(quick)
        assert found.video is not None
    finally:
        await pool.close()
