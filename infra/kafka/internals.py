"""Every use of aiokafka's private attributes, in one place, each with the reason it is needed.

aiokafka's public API cannot stop an idempotent producer that a dead broker
keeps retrying (aiokafka #1101), cannot tell that a producer's sender task has
died, and cannot list a topic's partitions without first subscribing to it.
These functions reach into the internals for exactly that. The pinned range
(`aiokafka<0.15`) and `tests/unit/test_aiokafka_internals.py`, which fails when
any of these attributes changes shape, keep them honest across upgrades.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.errors import KafkaTimeoutError

log = logging.getLogger(__name__)


def sender_stopped(producer: Any) -> bool:
    """True when the producer's background sender has ended: nothing more will be sent."""
    task = producer._sender.sender_task
    return task is not None and bool(task.done())


async def cluster_metadata(client_owner: Any) -> Any:
    """Fresh metadata of every topic, from a started consumer or producer.

    `consumer.topics()` fetches the same but returns only names, and
    `partitions_for_topic()` knows only topics the client already tracks.
    """
    return await client_owner._client.fetch_all_metadata()


async def abandon_pending(producer: Any, seconds: float) -> None:
    """Stop the producer's sender, then fail every record it still holds.

    aiokafka's stop() waits for every pending batch, and its idempotent
    producer never gives one up (aiokafka #1101), so without this stop() would
    hang. The order matters: failing batches while the sender still has them
    in flight breaks its bookkeeping (a KeyError in `reenqueue`), so the sender
    goes first.
    """
    try:
        async with asyncio.timeout(seconds):
            await producer._sender.close()
    except TimeoutError:
        log.error("the Kafka producer's sender did not stop within %g s", seconds)
    accumulator = producer._message_accumulator
    batches = [batch for queue in accumulator._batches.values() for batch in queue]
    batches += list(accumulator._pending_batches)
    accumulator.fail_all(
        KafkaTimeoutError("the producer stopped before the broker took the record")
    )
    for batch in batches:
        # fail_all also fails each batch's internal drain waiter, which nobody
        # awaits once the sender is gone: retrieve it, or asyncio logs it as lost.
        waiter = batch._drain_waiter
        if waiter.done() and not waiter.cancelled():
            waiter.exception()
