"""`ingest reconcile`: the reconciler (`ingest.usecases.reconcile`) on the configured S3 and Kafka.

`--since` takes a duration back from now (`90m`, `24h`, `3600`) or an ISO 8601
time (UTC when it names no offset). Prints one summary line (and the upload
ids it re-emitted, or could not); exits 1 when S3 or Kafka cannot be reached
or an event cannot be sent (what was sent stays sent: run it again).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from infra import layout
from infra.env import SettingsError, duration
from infra.kafka.sink import KafkaEventSink
from infra.s3 import open_s3_client
from ingest.adapters.kafka_history import KafkaUploadsHistory
from ingest.adapters.s3_documents import S3DocumentStore
from ingest.adapters.s3_store import S3ObjectStore
from ingest.settings import IngestSettings
from ingest.usecases.reconcile import Reconciler, ReconcileReport
from ingest.usecases.sessions import SessionService
from schemas import Topics


def parse_since(value: str | None, *, now: datetime | None = None) -> datetime | None:
    if value is None:
        return None
    now = now or datetime.now(UTC)
    try:
        return now - timedelta(seconds=duration(value, "--since"))
    except SettingsError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise SettingsError(
            f"--since={value!r} is neither a duration (90m, 24h) nor an ISO 8601 time"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def reconcile(settings: IngestSettings, since: datetime | None) -> ReconcileReport:
    topics = Topics(settings.topic_prefix)
    async with (
        open_s3_client(settings.s3_endpoint()) as s3,
        KafkaEventSink(
            settings.kafka_bootstrap_servers,
            topics,
            source="/ingest/reconcile",
            timeout=settings.event_timeout_seconds,
        ) as sink,
    ):
        documents = S3DocumentStore(s3, settings.s3_bucket, prefix=layout.STATE_PREFIX)
        reconciler = Reconciler(
            SessionService(documents, ttl_seconds=settings.session_ttl_seconds),
            KafkaUploadsHistory(settings.kafka_bootstrap_servers, topics.uploads),
            sink,
            S3ObjectStore(s3, settings.s3_bucket),
        )
        return await reconciler.run(since)


def print_report(report: ReconcileReport) -> None:
    print(
        f"checked {report.checked} completed uploads against {report.records_read} records: "
        f"{report.present} present, {len(report.reemitted)} re-emitted, "
        f"{len(report.unrecoverable)} without a recorded event, "
        f"{len(report.objects_missing)} whose object is not as recorded"
    )
    for upload_id in report.reemitted:
        print(f"re-emitted upload.completed of {upload_id}")
    for upload_id in report.objects_missing:
        print(f"not re-emitted, its object is gone or differs: {upload_id}", file=sys.stderr)
    for upload_id in report.unrecoverable:
        print(
            f"not on the topic and completed before its event was kept: {upload_id}",
            file=sys.stderr,
        )
