"""The dead-letter topic: a record a consumer gave up on, kept as it was, with the error named.

The dead letter carries the original key, value and headers, so it can be
read, fixed and replayed like the original, plus `dlq.*` headers naming the
error (type and message), where the record came from (topic, partition,
offset), which consumer gave up, and how often it was tried. Headers of an
earlier dead-lettering (a replayed dead letter that failed again) are
replaced, never repeated.

How it fails: `send` retries a publisher error that is retriable by the
runtime's policy; when the publisher still refuses (or refuses for good) it
raises DeadLetterFailed. The record is then neither handled nor parked, so
the runtime must stop rather than commit past it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from consumers.runtime.retries import RetryPolicy
from infra.errors import ServiceError
from infra.feeds import Record, RecordPublisher, where

log = logging.getLogger(__name__)

PREFIX: Final = "dlq."
ERROR_TYPE: Final = PREFIX + "error.type"
ERROR_MESSAGE: Final = PREFIX + "error.message"
TOPIC: Final = PREFIX + "original.topic"
PARTITION: Final = PREFIX + "original.partition"
OFFSET: Final = PREFIX + "original.offset"
CONSUMER: Final = PREFIX + "consumer"
ATTEMPTS: Final = PREFIX + "attempts"

# Kafka headers have no size limit of their own, but a record does: keep a traceback-sized
# message from pushing a dead letter over the broker's limit.
_MESSAGE_LIMIT: Final = 4096


class DeadLetterFailed(ServiceError):
    """A record could not be written to the dead-letter topic; it must not be committed."""

    error_code = "DEAD_LETTER_FAILED"


def dead_letter_headers(
    record: Record, error: BaseException, *, consumer: str, attempts: int
) -> list[tuple[str, bytes]]:
    """The original headers (earlier `dlq.*` ones dropped), then the error's."""
    kept = [(name, value) for name, value in record.headers if not name.startswith(PREFIX)]
    error_type = f"{type(error).__module__}.{type(error).__qualname__}"
    added = {
        ERROR_TYPE: error_type,
        ERROR_MESSAGE: (str(error) or error_type)[:_MESSAGE_LIMIT],
        TOPIC: record.topic,
        PARTITION: str(record.partition),
        OFFSET: str(record.offset),
        CONSUMER: consumer,
        ATTEMPTS: str(attempts),
    }
    return kept + [(name, value.encode()) for name, value in added.items()]


class DeadLetters:
    """Writes dead letters of one consumer to one topic through a `RecordPublisher`."""

    def __init__(
        self, publisher: RecordPublisher, topic: str, *, consumer: str, policy: RetryPolicy
    ) -> None:
        self._publisher = publisher
        self._topic = topic
        self._consumer = consumer
        self._policy = policy

    @property
    def topic(self) -> str:
        return self._topic

    async def send(self, record: Record, error: BaseException, *, attempts: int) -> None:
        headers = dead_letter_headers(record, error, consumer=self._consumer, attempts=attempts)
        failures = 0
        while True:
            try:
                await self._publisher.publish_record(
                    self._topic, key=record.key, value=record.value, headers=headers
                )
                return
            except ServiceError as refused:
                failures += 1
                if not refused.retriable or failures >= self._policy.attempts:
                    raise DeadLetterFailed(
                        f"could not dead-letter {where(record)} to {self._topic} "
                        f"after {failures} tries: {refused.message}",
                        details={"topic": self._topic, "record": where(record)},
                    ) from refused
                log.warning(
                    "dead-lettering %s failed (%s); trying again", where(record), refused.message
                )
                await asyncio.sleep(self._policy.delay(failures))
