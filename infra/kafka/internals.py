"""Every use of aiokafka's private attributes, in one place, each with the reason it is needed.

aiokafka's public API cannot stop an idempotent producer that a dead broker
keeps retrying (aiokafka #1101), cannot tell that a producer's sender task has
died, cannot list a topic's partitions without first subscribing to it, and
its consumer's stop() can end early with a CancelledError of its own while a
broker is down, leaving the client open. These functions reach into the
internals for exactly that. The pinned range (`aiokafka<0.15`) and
`tests/unit/test_aiokafka_internals.py`, which fails when any of these
attributes changes shape, keep them honest across upgrades.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from aiokafka.errors import KafkaError, KafkaTimeoutError

log = logging.getLogger(__name__)

_CLOSE_SECONDS: Final = 5.0


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
    # A batch sent, then put back for a retry, still carries the callback that removes it from
    # the pending set once done: failed while queued, that callback would raise KeyError (an
    # "Exception in callback" traceback per batch). In the pending set too, it finds it there.
    accumulator._pending_batches.update(batches)
    batches = list(accumulator._pending_batches)
    accumulator.fail_all(
        KafkaTimeoutError("the producer stopped before the broker took the record")
    )
    for batch in batches:
        # fail_all also fails each batch's internal drain waiter, which nobody
        # awaits once the sender is gone: retrieve it, or asyncio logs it as lost.
        waiter = batch._drain_waiter
        if waiter.done() and not waiter.cancelled():
            waiter.exception()


async def stop_consumer(consumer: Any, seconds: float) -> None:
    """Stop an AIOKafkaConsumer within `seconds`, and finish what its stop() may leave undone.

    While a broker is down, a fetch of the consumer may be sleeping in its retry
    back-off when stop() cancels it; Fetcher.close() awaits it without
    suppressing the CancelledError it then raises, so stop() ends with a
    CancelledError that is not ours before closing the client, whose metadata
    task would retry the dead broker for ever. Ours (this task
    being cancelled) still propagates. Giving up after `seconds` is logged.
    """
    try:
        async with asyncio.timeout(seconds):
            await consumer.stop()
    except TimeoutError:
        log.error("a Kafka consumer did not stop within %g s; abandoned", seconds)
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
        log.warning("a Kafka consumer's stop() was cut short by its own fetch; closing its client")
        await _finish_stopping(consumer)
    except (KafkaError, OSError) as error:
        log.warning("could not close a Kafka consumer cleanly: %s", error)


async def _finish_stopping(consumer: Any) -> None:
    fetches = [task for task in consumer._fetcher._pending_tasks if not task.done()]
    for task in fetches:
        task.cancel()
    # return_exceptions: each cancelled fetch is an outcome here, not a failure of ours.
    await asyncio.gather(*fetches, return_exceptions=True)
    try:
        async with asyncio.timeout(_CLOSE_SECONDS):
            await consumer._client.close()
    except TimeoutError:
        log.error("a Kafka consumer's client did not close within %g s", _CLOSE_SECONDS)
