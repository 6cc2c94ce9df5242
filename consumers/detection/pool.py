"""The worker processes that run analyses, with a time limit per file, fed in priority order.

The decoder is native code reading untrusted files: it can hang or take the
process down. So each analysis runs in a worker process of a pebble
`ProcessPool`, which can do what the standard library's ProcessPoolExecutor
cannot: stop one task at its time limit by terminating its worker, and
replace any worker that died (the other tasks go on; the executor would
instead break the whole pool). Workers are started with `spawn` (the
consumer's event loop and client threads are never forked) and load the
cascade and the model once (`analysis.start_worker`).

`PriorityGate` hands the pool's slots out: at most one analysis per worker
is scheduled, and what waits goes in order of upload priority (10 first,
then 9, ...; in arrival order within one priority), so a low-priority
backlog never queues ahead of an urgent upload inside the pool.

How it fails: `analyse` raises DecoderTimedOut when the file ran past the
time limit (its worker was killed), DecoderCrashed when the worker died
under it, and AnalysisError for an exception raised inside the analysis;
none is retriable. Cancelling `analyse` cancels the task (terminating its
worker if it is running).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import logging
import multiprocessing
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pebble

from consumers.detection.analysis import (
    Analysis,
    AnalysisSettings,
    analyse_in_worker,
    start_worker,
    worker_ready,
)
from infra.errors import ServiceError

log = logging.getLogger(__name__)


class DecoderTimedOut(ServiceError):
    error_code = "TIMEOUT"


class DecoderCrashed(ServiceError):
    error_code = "CORRUPT"


class AnalysisError(ServiceError):
    error_code = "INTERNAL"


class PriorityGate:
    """`slots` holders at once; waiters are let in by highest priority, then first come."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("a gate needs at least one slot")
        self._free = slots
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, future in self._waiting if not future.done())

    @asynccontextmanager
    async def slot(self, priority: int) -> AsyncIterator[None]:
        if self._free > 0 and not self.waiting:
            self._free -= 1
        else:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (-priority, next(self._arrivals), turn))
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._release()  # let in just as it was cancelled: pass the slot on
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1


class AnalysisPool:
    """`workers` processes; `analyse` waits for a slot by priority, then runs one file."""

    def __init__(self, settings: AnalysisSettings, *, workers: int, time_limit: float) -> None:
        self.workers = workers
        self.time_limit = time_limit
        self._gate = PriorityGate(workers)
        self._pool = pebble.ProcessPool(
            max_workers=workers,
            initializer=start_worker,
            initargs=(settings,),
            context=multiprocessing.get_context("spawn"),
        )

    @property
    def waiting(self) -> int:
        return self._gate.waiting

    async def start(self) -> None:
        """Start the workers and wait until one has loaded what it needs.

        Off the event loop: starting a process writes its preparation data to a
        pipe, which pebble does in the thread that schedules the first task.
        """
        future = await asyncio.to_thread(self._pool.schedule, worker_ready)
        if not await asyncio.wrap_future(future):
            raise RuntimeError("a detection worker started without loading its analysis")

    async def analyse(self, path: Path, *, priority: int = 5) -> Analysis:
        async with self._gate.slot(priority):
            future = self._pool.schedule(
                analyse_in_worker, args=(str(path),), timeout=self.time_limit
            )
            try:
                return await asyncio.wrap_future(future)
            except concurrent.futures.TimeoutError:
                raise DecoderTimedOut(
                    f"the analysis ran past its {self.time_limit:g} s limit and was stopped"
                ) from None
            except pebble.ProcessExpired as error:
                raise DecoderCrashed(
                    f"the decoder process died on this file (exit code {error.exitcode})"
                ) from None
            except (asyncio.CancelledError, ServiceError):
                future.cancel()  # type: ignore[no-untyped-call]
                raise
            except Exception as error:
                raise AnalysisError(
                    f"the analysis failed: {type(error).__name__}: {error}"
                ) from error

    async def close(self) -> None:
        """Stop every worker (what runs is terminated) and wait for them, off the event loop."""
        self._pool.stop()  # type: ignore[no-untyped-call]
        await asyncio.to_thread(self._pool.join, 10)
