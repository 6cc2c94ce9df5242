"""One record from the log to its outcome: decode, hand to the app, retry or dead-letter.

Outcomes: `handled` (the app returned), `skipped` (an event type this
service does not know, or a tombstone: nothing to handle), `dead_lettered`
(the record cannot be handled: it is not a valid event, or the app raised an
error that is not retriable, or a retriable one for every try the policy
allows). A retriable `ServiceError` is tried again after a backoff; the
`on_retry` hook tells the partition to start nothing new meanwhile.

How it fails: DeadLetterFailed when the dead letter cannot be written (the
record has no outcome and must not be committed). Cancellation (a drain that
ran out of time) passes through: the record stays unfinished and is
delivered again to whoever reads the partition next.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from consumers.runtime.app import ConsumerApp
from consumers.runtime.deadletter import DeadLetters
from consumers.runtime.metrics import ConsumerMetrics, Outcome
from consumers.runtime.retries import RetryPolicy
from infra.errors import ServiceError
from infra.feeds import Record, where
from schemas import decode

log = logging.getLogger(__name__)

RetryHook = Callable[[bool], None]
"""Told True when a record starts waiting to be tried again, False when it stops waiting."""


class RecordHandling:
    """Takes records of any partition of one app to their outcome; see the module docstring."""

    def __init__(
        self,
        app: ConsumerApp,
        dead_letters: DeadLetters,
        metrics: ConsumerMetrics,
        policy: RetryPolicy,
    ) -> None:
        self._app = app
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._policy = policy

    async def process(self, record: Record, on_retry: RetryHook) -> Outcome:
        started = time.perf_counter()
        self._metrics.in_flight.labels(self._metrics.consumer).inc()
        try:
            outcome = await self._outcome(record, on_retry)
        finally:
            self._metrics.in_flight.labels(self._metrics.consumer).dec()
        self._metrics.finished(outcome, time.perf_counter() - started)
        return outcome

    async def _outcome(self, record: Record, on_retry: RetryHook) -> Outcome:
        if record.value is None:
            log.info("skipping the tombstone at %s", where(record))
            return "skipped"
        try:
            event = decode(record.value, record.headers)
        except Exception as invalid:  # InvalidEvent, or a payload msgspec cannot read at all
            return await self._dead_letter(record, invalid, attempts=0)
        if event is None:
            # schemas.decode has logged the unknown type; a newer producer may send it.
            return "skipped"
        failures = 0
        while True:
            try:
                await self._app.handle(event, record)
                return "handled"
            except ServiceError as error:
                failures += 1
                if not error.retriable or failures >= self._policy.attempts:
                    return await self._dead_letter(record, error, attempts=failures)
                await self._wait_to_retry(record, error, failures, on_retry)
            except Exception as error:
                return await self._dead_letter(record, error, attempts=failures + 1)

    async def _wait_to_retry(
        self, record: Record, error: ServiceError, failures: int, on_retry: RetryHook
    ) -> None:
        delay = self._policy.delay(failures)
        log.warning(
            "%s failed on %s (try %d of %d), trying again in %.2f s: %s",
            self._app.name,
            where(record),
            failures,
            self._policy.attempts,
            delay,
            error.message,
        )
        self._metrics.retried()
        on_retry(True)
        try:
            await asyncio.sleep(delay)
        finally:
            on_retry(False)

    async def _dead_letter(self, record: Record, error: BaseException, *, attempts: int) -> Outcome:
        log.error(
            "%s gives up on %s after %d tries, dead-lettering it to %s: %s: %s",
            self._app.name,
            where(record),
            attempts,
            self._dead_letters.topic,
            type(error).__name__,
            error,
        )
        await self._dead_letters.send(record, error, attempts=attempts)
        return "dead_lettered"
