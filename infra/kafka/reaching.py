"""Reaching a Kafka cluster that may still be starting: one retry loop for every client.

A broker that is starting (compose, a restart, a rolling upgrade) refuses
connections for a while, and topics may not be provisioned yet. `until_reachable`
calls a client's one-shot `connect` again and again until it succeeds or the
deadline passes.

How it fails: at the deadline, ServiceUnavailable naming what was being
reached and the last error seen. Only Kafka errors and OS errors are retried;
anything else (a bug, a cancellation) goes straight through. `connect` must
leave nothing half-started behind when it raises.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from aiokafka.errors import KafkaError

from infra.errors import ServiceUnavailable

log = logging.getLogger(__name__)

RETRY_SECONDS: Final = 1.0

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
