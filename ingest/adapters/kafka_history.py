"""`UploadsHistory` on Kafka: the uploads topic read once to its end with the topic reader.

Reads every partition from the first record stamped at or after `since` (from
the beginning without one) with `infra.kafka.reader.KafkaTopicReader`, keeps
the ids of the terminal events it decodes, and stops once it has read what
the topic held when it started. A record that is not a valid event is logged
and skipped by the reader; types it does not know are skipped.

How it fails: ServiceUnavailable when Kafka or the topic cannot be reached,
or the topic is not read to its end within `timeout` seconds (an answer from
part of the topic would send events again that are there).
"""

from __future__ import annotations

from datetime import datetime

from infra.errors import ServiceUnavailable
from infra.feeds import Record
from infra.kafka.reader import KafkaTopicReader
from ingest.ports import TerminalEventsSeen
from schemas import UploadCancelled, UploadCompleted, UploadFailed, decode


class KafkaUploadsHistory:
    def __init__(self, bootstrap_servers: str, topic: str, *, timeout: float = 120.0) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic
        self._timeout = timeout

    async def terminal_events(self, since: datetime | None) -> TerminalEventsSeen:
        seen = _Seen()
        reader = KafkaTopicReader(
            self._bootstrap_servers,
            self._topic,
            seen.add,
            start_timeout=self._timeout,
            ready_timeout=self._timeout,
            client_id="ingest-reconcile",
            since=since.timestamp() if since is not None else None,
        )
        async with reader:
            if not reader.ready.is_set():
                raise ServiceUnavailable(
                    f"could not read topic {self._topic!r} to its end within {self._timeout:g} s",
                    details={"topic": self._topic, "records_read": seen.records},
                )
        return TerminalEventsSeen(
            event_ids=frozenset(seen.event_ids),
            completed_uploads=frozenset(seen.completed_uploads),
            records=seen.records,
        )


class _Seen:
    def __init__(self) -> None:
        self.event_ids: set[str] = set()
        self.completed_uploads: set[str] = set()
        self.records = 0

    def add(self, record: Record) -> None:
        self.records += 1
        if record.value is None:
            return
        event = decode(record.value, record.headers)
        if isinstance(event, UploadCompleted):
            self.completed_uploads.add(event.upload_id)
        if isinstance(event, UploadCompleted | UploadFailed | UploadCancelled):
            self.event_ids.add(event.event_id)
