"""Publishing events to Kafka: an event sink over one idempotent aiokafka producer.

Events are CloudEvents in binary mode (`schemas.encode`), routed by type
(`schemas.topic_for`) and keyed by `schemas.key_of`, so the events of one
upload on a topic share a key, land on one partition and, since the producer
is idempotent and the caller awaits each `emit` in turn, stay in order. Records
are sent without lingering, so an acknowledgement takes one round trip.

`publish_record` appends a raw record as it is (a dead letter keeps the
original key, value and headers): `infra.feeds.RecordPublisher`.

How it fails: every wait is bounded. aiokafka's idempotent producer retries a
batch for a dead broker forever (aiokafka #1101), so `emit` puts its own time
limit around both the hand-over and the broker's acknowledgement and raises
EventDeliveryError when it passes, or on any Kafka error (`retriable` says
whether trying again may help; `may_be_delivered` is true when the record was
already queued, so a resend can duplicate it: consumers de-duplicate by
`ce_id`). A producer that has given up a record this way, or whose sender
has died, is wedged (an idempotent producer whose records were failed under
it answers OutOfOrderSequenceNumber once the broker is back): it is
abandoned at once (its pending records failed, then closed in the
background) and the next send builds a fresh one, within the same time
limit. So a short `timeout` lets a caller such as the event journal fall
back quickly while the broker is away. `start` raises ServiceUnavailable
when no broker answers within its time limit, `check` when the cluster does
not answer. Started without waiting for the broker (`wait_for_broker=False`,
for a process that must serve with Kafka down), it returns at once and the
producer connects in the background, trying again every second; until then
every send and check fails as with a dead broker (EventDeliveryError,
retriable), after one attempt to connect within its own time limit. `stop`
never hangs: records still undelivered after the time limit are failed and
logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from aiokafka import AIOKafkaProducer
from aiokafka.codec import has_gzip, has_lz4, has_snappy, has_zstd
from aiokafka.errors import KafkaError, KafkaTimeoutError, OutOfOrderSequenceNumber

from infra.errors import EventDeliveryError, ServiceUnavailable
from infra.feeds import RecordPublisher
from infra.kafka import internals
from infra.kafka.reaching import keep_trying, until_reachable
from schemas import Event, Topics, encode, event_type, topic_for

log = logging.getLogger(__name__)

KafkaCallObserver = Callable[[str, float, bool], None]
"""Told of every emit: (event type, seconds, ok). `ok` is False when the emit failed."""

_CODECS: dict[str, Callable[[], bool]] = {
    "gzip": has_gzip,
    "snappy": has_snappy,
    "lz4": has_lz4,
    "zstd": has_zstd,
}


class KafkaEventSink:
    """An event sink publishing to the topics of `topics`; start it before use."""

    def __init__(
        self,
        bootstrap_servers: str,
        topics: Topics,
        *,
        source: str,
        timeout: float = 10.0,
        start_timeout: float = 30.0,
        check_timeout: float = 5.0,
        compression_type: str | None = "lz4",
        linger_ms: int = 0,
        request_timeout_ms: int | None = None,
        client_id: str | None = None,
        observer: KafkaCallObserver | None = None,
    ) -> None:
        if not source:
            raise ValueError("a CloudEvents source must not be empty")
        if compression_type is not None:
            available = _CODECS.get(compression_type)
            if available is None or not available():
                raise ValueError(f"compression {compression_type!r} is not available here")
        self._bootstrap_servers = bootstrap_servers
        self._topics = topics
        self._source = source
        self._timeout = timeout
        self._start_timeout = start_timeout
        self._check_timeout = check_timeout
        self._compression_type = compression_type
        # No linger: an upload waits for the acknowledgement of its completed event, and a
        # linger would add itself to every one. Records still go in batches under load: the
        # producer has one request in flight per broker, and what comes meanwhile waits for it.
        self._linger_ms = linger_ms
        # An acknowledgement later than the emit's own limit is of no use to the
        # caller; a shorter request timeout also lets stop() finish sooner.
        self._request_timeout_ms = request_timeout_ms or max(1000, int(timeout * 1000))
        self._client_id = client_id
        self._observer = observer
        self._producer: Any = None
        self._started = False
        self._connecting = asyncio.Lock()
        self._abandoning: set[asyncio.Task[None]] = set()
        self._background: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        return self._started

    @property
    def connected(self) -> bool:
        """Whether a producer is connected now (False while one is being built)."""
        return self._producer is not None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self, *, wait_for_broker: bool = True) -> None:
        """Connect; ServiceUnavailable if no broker answers within `start_timeout` seconds.

        Without `wait_for_broker`: one attempt within the send time limit, then, when it
        failed, return anyway and keep connecting in the background (see `connected`).
        """
        if self._started:
            return
        if not wait_for_broker:
            self._started = True
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await self._connect_once()
            if self._producer is None:
                self._background = asyncio.create_task(
                    keep_trying(
                        self._connect_once, what=f"connecting to Kafka at {self._bootstrap_servers}"
                    ),
                    name="kafka-connect",
                )
                self._background.add_done_callback(_log_failure)
            return
        self._producer = await until_reachable(
            self._connect,
            within=self._start_timeout,
            what=f"reaching Kafka at {self._bootstrap_servers}",
            details={"bootstrap_servers": self._bootstrap_servers},
        )
        self._started = True

    async def _connect_once(self) -> None:
        # Under the lock sends take to build a producer, so only one is ever built.
        async with self._connecting, asyncio.timeout(max(self._timeout, 5.0)):
            if self._started and self._producer is None:
                self._producer = await self._connect()

    async def _connect(self) -> Any:
        producer = self._new_producer()
        try:
            await producer.start()
        except BaseException:
            await _stop_quietly(producer)
            raise
        return producer

    async def stop(self) -> None:
        """Deliver what is pending within `timeout` seconds, fail the rest, disconnect."""
        self._started = False
        background, self._background = self._background, None
        if background is not None:
            background.cancel()
            await asyncio.wait([background])
        producer, self._producer = self._producer, None
        if self._abandoning:
            await asyncio.wait(self._abandoning, timeout=self._timeout)
        if producer is None:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await producer.flush()
        except TimeoutError:
            log.error(
                "Kafka did not take the pending events within %g s; they are dropped",
                self._timeout,
            )
            await internals.abandon_pending(producer, self._timeout)
        try:
            async with asyncio.timeout(self._timeout):
                await producer.stop()
        except TimeoutError:
            log.error("the Kafka producer did not close within %g s", self._timeout)

    async def emit(self, event: Event) -> None:
        ce_type = event_type(event)
        topic = topic_for(ce_type, self._topics)
        details: dict[str, Any] = {
            "event_id": event.event_id,
            "event_type": ce_type,
            "topic": topic,
        }
        encoded = encode(event, source=self._source)
        started = time.perf_counter()
        delivery: asyncio.Future[Any] | None = None
        producer: Any = None
        try:
            async with asyncio.timeout(self._timeout):
                producer = await self._ready_producer(f"emit {ce_type}", details)
                delivery = await producer.send(
                    topic, value=encoded.value, key=encoded.key, headers=encoded.headers
                )
                # Shielded: cancelling aiokafka's own future would not withdraw the record.
                await asyncio.shield(delivery)
        except TimeoutError:
            self._report(ce_type, started, ok=False)
            self._abandon(producer)
            raise EventDeliveryError(
                f"Kafka did not take {ce_type} {event.event_id} within {self._timeout:g} s",
                details=details,
                retriable=True,
                may_be_delivered=delivery is not None,
            ) from None
        except EventDeliveryError:
            self._report(ce_type, started, ok=False)
            raise
        except KafkaError as error:
            self._report(ce_type, started, ok=False)
            self._abandon_if_wedged(producer, error)
            raise EventDeliveryError(
                f"Kafka refused {ce_type} {event.event_id}: {error}",
                details=details,
                # aiokafka marks a full send buffer (KafkaTimeoutError) as final; it is not.
                retriable=bool(error.retriable) or isinstance(error, KafkaTimeoutError),
            ) from error
        finally:
            if delivery is not None and not delivery.done():
                delivery.add_done_callback(_late_outcome_logger(event.event_id, ce_type))
        self._report(ce_type, started, ok=True)

    async def publish_record(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Append one raw record to `topic`; EventDeliveryError as `emit` raises it."""
        details: dict[str, Any] = {"topic": topic}
        delivery: asyncio.Future[Any] | None = None
        producer: Any = None
        try:
            async with asyncio.timeout(self._timeout):
                producer = await self._ready_producer(f"publish to {topic}", details)
                delivery = await producer.send(topic, value=value, key=key, headers=list(headers))
                # Shielded: cancelling aiokafka's own future would not withdraw the record.
                await asyncio.shield(delivery)
        except TimeoutError:
            self._abandon(producer)
            raise EventDeliveryError(
                f"Kafka did not take a record for {topic} within {self._timeout:g} s",
                details=details,
                retriable=True,
                may_be_delivered=delivery is not None,
            ) from None
        except KafkaError as error:
            self._abandon_if_wedged(producer, error)
            raise EventDeliveryError(
                f"Kafka refused a record for {topic}: {error}",
                details=details,
                retriable=bool(error.retriable) or isinstance(error, KafkaTimeoutError),
            ) from error
        finally:
            if delivery is not None and not delivery.done():
                delivery.add_done_callback(_late_outcome_logger("a raw record", topic))

    async def check(self) -> None:
        """ServiceUnavailable unless the cluster answers a metadata request in time."""
        if not self._started:
            raise ServiceUnavailable("the Kafka producer is not started")
        try:
            async with asyncio.timeout(self._check_timeout):
                producer = await self._ready_producer("check", {})
                await producer.client.fetch_all_metadata()
        except TimeoutError:
            raise ServiceUnavailable(
                f"Kafka at {self._bootstrap_servers} did not answer within "
                f"{self._check_timeout:g} s",
            ) from None
        except (KafkaError, OSError) as error:
            raise ServiceUnavailable(
                f"Kafka at {self._bootstrap_servers} is not available: {error}",
            ) from error

    async def _ready_producer(self, what: str, details: dict[str, Any]) -> Any:
        """The producer, built afresh when the last one was abandoned (the caller bounds it)."""
        if not self._started:
            raise EventDeliveryError(
                f"cannot {what}: the Kafka producer is not started", details=details, retriable=True
            )
        producer = self._producer
        if producer is not None and internals.sender_stopped(producer):
            # Its failure already failed every pending send; nothing more would be sent.
            self._abandon(producer)
            producer = None
        if producer is not None:
            return producer
        async with self._connecting:
            if self._producer is None:
                try:
                    self._producer = await self._connect()
                except (KafkaError, OSError) as error:
                    raise EventDeliveryError(
                        f"cannot {what}: Kafka at {self._bootstrap_servers} is not reachable: "
                        f"{error}",
                        details=details,
                        retriable=True,
                    ) from error
                if not self._started:  # stopped while connecting
                    self._abandon(self._producer)
                    raise EventDeliveryError(f"cannot {what}: the sink stopped", retriable=True)
            return self._producer

    def _abandon_if_wedged(self, producer: Any, error: KafkaError) -> None:
        if isinstance(error, OutOfOrderSequenceNumber | KafkaTimeoutError):
            self._abandon(producer)

    def _abandon(self, producer: Any) -> None:
        """Stop using `producer`: fail what it still holds and close it, in the background."""
        if producer is None:
            return
        if self._producer is producer:
            self._producer = None
        task = asyncio.create_task(self._close_abandoned(producer), name="kafka-abandon")
        self._abandoning.add(task)
        task.add_done_callback(self._abandoning.discard)

    async def _close_abandoned(self, producer: Any) -> None:
        try:
            await internals.abandon_pending(producer, self._timeout)
        except Exception:
            log.exception("could not fail the records of an abandoned Kafka producer")
        await _stop_quietly(producer)

    def _new_producer(self) -> Any:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap_servers,
            client_id=self._client_id,
            enable_idempotence=True,
            acks="all",
            compression_type=self._compression_type,
            linger_ms=self._linger_ms,
            request_timeout_ms=self._request_timeout_ms,
        )

    def _report(self, ce_type: str, started: float, *, ok: bool) -> None:
        if self._observer is None:
            return
        try:
            self._observer(ce_type, time.perf_counter() - started, ok)
        except Exception:
            # Metrics must never fail an upload; the bug still shows in the log.
            log.exception("the Kafka emit observer failed on %s", ce_type)


def _late_outcome_logger(event_id: str, ce_type: str) -> Callable[[asyncio.Future[Any]], None]:
    """Logs what became of a record whose emit gave up waiting (and retrieves its error)."""

    def log_outcome(delivery: asyncio.Future[Any]) -> None:
        if delivery.cancelled():
            return
        error = delivery.exception()
        if error is None:
            log.warning("%s %s reached Kafka after its emit had timed out", ce_type, event_id)
        else:
            log.error("%s %s was never delivered to Kafka: %s", ce_type, event_id, error)

    return log_outcome


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("connecting to Kafka in the background failed", exc_info=error)


async def _stop_quietly(producer: Any) -> None:
    try:
        async with asyncio.timeout(5.0):
            await producer.stop()
    except (TimeoutError, KafkaError, OSError) as error:
        log.warning("could not close a Kafka producer that failed to start: %s", error)


if TYPE_CHECKING:

    def _publishes(sink: KafkaEventSink) -> RecordPublisher:
        return sink
