"""A tus request's work run under the upload's lease: taken, kept while it runs, seen by shutdown.

A PATCH, the join of a final upload and a completion found pending all write to
an upload only while holding its lease (`lease`). `LeasedRunner` takes that
lease for a request (`acquire`), keeps it while the work runs (`keeping`: a
`LeaseKeeper` renewing it and carrying a cancel or a release request from any
instance to the work), and runs the work as its own task registered with
`ActiveUploads` (`run`), so a shutdown waits for it and a DELETE on this
instance interrupts it. The work runs in a task shielded from the request: a
client that goes away does not cut a commit in half.

How it fails: `acquire` raises what `lease.acquire` raises (UploadLocked, 409,
and the admission's refusals); `run` raises what the work raises, UploadGone
(410) when a DELETE stopped it, ServiceUnavailable (503) when it was stopped
otherwise; when the request itself is cancelled (shutdown) the work is let
commit what it has, within the pipeline's abort timeout, before the
cancellation goes on. `refuse_when_draining` raises ServiceUnavailable (503)
once the server shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar, cast

from ingest.auth import Principal
from ingest.errors import ServiceUnavailable, UploadGone
from ingest.model import UploadResult
from ingest.pipeline.config import PipelineConfig
from ingest.pipeline.ending import run_to_end
from ingest.usecases.tus.body import TusInterrupt
from ingest.usecases.tus.events import TusEvents
from ingest.usecases.tus.lease import Held, LeaseKeeper, LeaseTimes, acquire
from ingest.usecases.tus.state import TusSession, TusSessions
from ingest.usecases.uploads import ActiveUploads

T = TypeVar("T")


class LeasedRunner:
    def __init__(
        self,
        *,
        sessions: TusSessions,
        active: ActiveUploads,
        pipeline: PipelineConfig,
        instance_id: str,
        times: LeaseTimes,
        clock: Callable[[], datetime],
    ) -> None:
        self._sessions = sessions
        self._active = active
        self._pipeline = pipeline
        self._instance_id = instance_id
        self._times = times
        self._clock = clock

    @property
    def draining(self) -> bool:
        return self._active.draining

    def refuse_when_draining(self) -> None:
        if self._active.draining:
            raise ServiceUnavailable("the server is shutting down; resume on another instance")

    async def acquire(
        self, session_id: str, principal: Principal, admit: Callable[[TusSession], TusSession]
    ) -> Held:
        return await acquire(
            self._sessions,
            session_id,
            principal,
            admit=admit,
            instance_id=self._instance_id,
            times=self._times,
            clock=self._clock,
        )

    async def run(
        self,
        work: Coroutine[Any, Any, T],
        *,
        name: str,
        held: Held,
        events: TusEvents,
        interrupt: TusInterrupt,
    ) -> T:
        """`work` as its own task, registered with ActiveUploads, under the kept lease."""
        session_id = held.session.session_id
        task = asyncio.create_task(work, name=name)
        # ActiveUploads only waits for, and interrupts, the task: its result type does not matter.
        self._active.add(session_id, cast("asyncio.Task[UploadResult]", task), interrupt)
        try:
            async with self.keeping(held, events, interrupt, task):
                return await self._await(task, interrupt)
        finally:
            self._active.remove(session_id)

    async def _await(self, task: asyncio.Task[T], interrupt: TusInterrupt) -> T:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                if interrupt.reason == "cancelled":
                    raise UploadGone(
                        "the upload was terminated", details={"status": "cancelled"}
                    ) from None
                raise ServiceUnavailable("the request was stopped; resume from HEAD") from None
            # This request itself is being cancelled (shutdown): let it commit what it has.
            if interrupt.valve is not None:
                interrupt.valve.close("shutdown")
            await run_to_end(
                asyncio.wait({task}),
                within=self._pipeline.abort_timeout,
                what=f"saving tus request {task.get_name()}",
            )
            raise

    @contextlib.asynccontextmanager
    async def keeping(
        self,
        held: Held,
        events: TusEvents,
        interrupt: TusInterrupt,
        task: asyncio.Task[Any],
    ) -> AsyncIterator[None]:
        """Renew the lease and watch the document while the request runs."""
        valve = interrupt.valve
        keeper = asyncio.create_task(
            LeaseKeeper(
                self._sessions,
                held,
                times=self._times,
                clock=self._clock,
                next_sequence=lambda: events.next_sequence,
                on_cancelled=lambda: interrupt.cancel(task, "cancelled"),
                on_release=valve.close if valve is not None else lambda reason: None,
            ).run(),
            name=f"tus-lease-{held.session.session_id}",
        )
        try:
            yield
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
