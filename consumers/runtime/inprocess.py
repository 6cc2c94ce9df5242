"""Consumer apps run inside one process on the in-process bus (`ingest dev`, tests).

`consumers_on_bus` starts one runtime per app, each a member of the group
named after its app, dead-lettering to the bus's `dlq` topic, and on leaving
the block stops them all (drain, commit, leave).

How it fails: a runtime that fails is logged when it fails and its error is
raised when the block ends (the others are still stopped in order first).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from consumers.runtime.app import ConsumerApp
from consumers.runtime.runtime import ConsumerRuntime, RuntimeOptions
from infra.bus import InProcessEventBus

log = logging.getLogger(__name__)


@asynccontextmanager
async def consumers_on_bus(
    bus: InProcessEventBus,
    apps: Sequence[ConsumerApp],
    *,
    options: RuntimeOptions | None = None,
) -> AsyncIterator[list[ConsumerRuntime]]:
    stop = asyncio.Event()
    runtimes: list[ConsumerRuntime] = []
    tasks: list[asyncio.Task[None]] = []
    for app in apps:
        runtime = ConsumerRuntime(app, bus, bus.topics.dlq, options=options)
        member = bus.group_consumer(app.name, *sorted(app.topics), listener=runtime)
        task = asyncio.create_task(
            runtime.run(member, stop, end_offsets=member), name=f"consumer {app.name}"
        )
        task.add_done_callback(_log_failure)
        runtimes.append(runtime)
        tasks.append(task)
    try:
        yield runtimes
    finally:
        stop.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            raise failures[0]


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())
