"""Reaching a Kafka cluster that may still be starting: one retry loop for every client.

A broker that is starting (compose, a restart, a rolling upgrade) refuses
connections for a while, and topics may not be provisioned yet. `until_reachable`
calls a client's one-shot `connect` again and again until it succeeds or the
deadline passes; `keep_trying` does the same without a deadline, for a client
that connects in the background while its process already serves.

How it fails: at the deadline, ServiceUnavailable naming what was being
reached and the last error seen. Only Kafka errors, OS errors and time-outs
are retried; anything else (a bug, a cancellation) goes straight through.
`connect` must leave nothing half-started behind when it raises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from aiokafka.errors import KafkaError

from infra.errors import ServiceUnavailable

log = logging.getLogger(__name__)

RETRY_SECONDS: Final = 1.0
REMIND_SECONDS: Final = 60.0
"""How often `keep_trying` says it is still trying (one line, not one per attempt)."""

T = TypeVar("T")


async def until_reachable(
    connect: Callable[[], Awaitable[T]],
    *,
    within: float,
    what: str,
    details: dict[str, Any],
) -> T:
    """`connect()`'s result once it succeeds; `what` completes "... did not succeed within"."""
    last_error: BaseException | None = None
    try:
        async with asyncio.timeout(within):
            while True:
                try:
                    return await connect()
                except (KafkaError, OSError) as error:
                    last_error = error
                    log.warning("%s: not yet (%s); trying again", what, error)
                    await asyncio.sleep(RETRY_SECONDS)
    except TimeoutError:
        raise ServiceUnavailable(
            f"{what}: not done within {within:g} s" + (f": {last_error}" if last_error else ""),
            details=details,
        ) from last_error


async def keep_trying(
    connect: Callable[[], Awaitable[T]], *, what: str, retry_seconds: float = RETRY_SECONDS
) -> T:
    """`connect()`'s result once it succeeds, however long that takes (cancel to give up).

    The log hears of the first failure, then once every REMIND_SECONDS, then of the success.
    """
    started = last_said = time.monotonic()
    failures = 0
    while True:
        try:
            result = await connect()
        except (KafkaError, OSError, TimeoutError) as error:
            failures += 1
            now = time.monotonic()
            if failures == 1 or now - last_said >= REMIND_SECONDS:
                last_said = now
                log.warning(
                    "%s: not yet after %.0f s (%s); trying again every %g s",
                    what,
                    now - started,
                    error,
                    retry_seconds,
                )
            await asyncio.sleep(retry_seconds)
            continue
        if failures:
            log.warning("%s: done after %.1f s", what, time.monotonic() - started)
        return result
