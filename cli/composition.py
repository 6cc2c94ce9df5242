"""The composition root of `ingest serve`: adapters built from settings, wired into services.

The only module that knows which adapter stands behind each port. Events go
to Kafka through the event journal, so an upload never waits on the broker,
not even at start: with Kafka away, the producer and the quota view connect
in the background, events are journaled meanwhile and the quota is answered
from the snapshots read so far. Start-up fails with ServiceUnavailable when
S3 cannot be reached in time, or when another live process holds the journal
directory; on exit
everything opened here is closed in reverse order (the journal first, sending
what it holds within its bound).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from infra import layout
from infra.errors import ServiceUnavailable
from infra.feeds import TopicReader
from infra.kafka.reader import KafkaTopicReader
from infra.kafka.sink import KafkaEventSink
from infra.s3 import open_s3_client
from ingest.adapters.journal.sink import JournaledEventSink
from ingest.adapters.journal.store import Journal, JournalLimits
from ingest.adapters.s3_documents import S3DocumentStore
from ingest.adapters.s3_store import S3ObjectStore
from ingest.auth import TokenVerifier
from ingest.http.metrics import IngestMetrics
from ingest.http.services import IngestServices
from ingest.pipeline.budget import MemoryBudget
from ingest.pipeline.config import PipelineConfig
from ingest.ports import DocumentStore, EventSink, ObjectStore, QuotaView, ResumableObjectStore
from ingest.settings import IngestSettings
from ingest.usecases.admission import UploadLimits
from ingest.usecases.cancels import CancelRelay
from ingest.usecases.duplicates import DuplicateIndex
from ingest.usecases.inflight import InFlightUploads
from ingest.usecases.instances import Heartbeats
from ingest.usecases.quota import QuotaSnapshots, SnapshotQuotaView
from ingest.usecases.sessions import SessionService
from ingest.usecases.sweep.complete import Completer
from ingest.usecases.sweep.settle import Settler
from ingest.usecases.sweep.sweeper import Sweeper
from ingest.usecases.tus.lease import LeaseTimes
from ingest.usecases.tus.service import TusConfig, TusService
from ingest.usecases.uploads import ActiveUploads, UploadService
from schemas import Topics


@asynccontextmanager
async def ingest_services(settings: IngestSettings) -> AsyncIterator[IngestServices]:
    metrics = IngestMetrics()
    topics = Topics(settings.topic_prefix)
    async with AsyncExitStack() as stack:
        s3 = await stack.enter_async_context(open_s3_client(settings.s3_endpoint()))
        store = S3ObjectStore(s3, settings.s3_bucket, observer=metrics.observe_s3)
        documents = S3DocumentStore(
            s3, settings.s3_bucket, prefix=layout.STATE_PREFIX, observer=metrics.observe_s3
        )
        kafka = KafkaEventSink(
            settings.kafka_bootstrap_servers,
            topics,
            source=f"/ingest/{settings.instance_id}",
            timeout=settings.kafka_send_timeout_seconds,
            observer=metrics.observe_kafka,
        )
        await kafka.start(wait_for_broker=False)
        stack.push_async_callback(kafka.stop)
        sink = journaled(settings, kafka, metrics)
        await sink.start()
        if not kafka.connected:
            # Straight to the journal from the first event; its relay sends them once it can.
            sink.watch.failed(ServiceUnavailable("Kafka was not reachable at start"))
        # Within the grace period, after the uploads it follows have had theirs.
        stack.push_async_callback(sink.stop, max(1.0, settings.shutdown_grace_seconds / 3))
        snapshots = QuotaSnapshots()
        quota_feed = KafkaTopicReader(
            settings.kafka_bootstrap_servers, topics.quota, snapshots.apply
        )
        await quota_feed.start(wait_for_broker=False)
        stack.push_async_callback(quota_feed.stop)
        quota = quota_view(settings, snapshots, quota_feed)
        yield wire_services(
            settings, store=store, documents=documents, sink=sink, quota=quota, metrics=metrics
        )


def journaled(
    settings: IngestSettings, inner: EventSink, metrics: IngestMetrics
) -> JournaledEventSink:
    """`inner` behind the event journal of the settings (not yet started)."""
    journal = Journal(
        settings.journal_path,
        JournalLimits(
            max_bytes=settings.journal_max_bytes, max_age=settings.journal_max_age_seconds
        ),
    )
    return JournaledEventSink(inner, journal, observer=metrics.observe_journal)


def quota_view(
    settings: IngestSettings, snapshots: QuotaSnapshots, feed: TopicReader
) -> SnapshotQuotaView:
    """The quota view over the snapshots a started reader of the quota topic feeds."""
    return SnapshotQuotaView(
        snapshots,
        feed,
        quota_bytes=settings.quota_bytes,
        quota_uploads=settings.quota_uploads,
        period_days=settings.quota_period_days,
    )


def wire_services(
    settings: IngestSettings,
    *,
    store: ObjectStore,
    documents: DocumentStore,
    sink: EventSink,
    quota: QuotaView,
    metrics: IngestMetrics,
) -> IngestServices:
    """The services of one process over whichever adapters stand behind the ports."""
    sessions = SessionService(documents, ttl_seconds=settings.session_ttl_seconds)
    duplicates = DuplicateIndex(documents)
    budget = MemoryBudget(settings.memory_budget)
    active = ActiveUploads()
    # One ledger for every way in, so a tus upload and a session count against each other.
    in_flight = InFlightUploads(hold_seconds=settings.session_ttl_seconds)
    pipeline = pipeline_config(settings)
    heartbeats = Heartbeats(
        documents,
        instance_id=settings.instance_id,
        dead_after_seconds=settings.instance_dead_after_seconds,
    )
    settler: Settler | None = None
    completer: Completer | None = None
    if isinstance(store, ResumableObjectStore):
        settler = Settler(sessions=sessions, store=store, sink=sink, pipeline=pipeline)
        completer = Completer(
            sessions=sessions, documents=documents, store=store, sink=sink, pipeline=pipeline
        )
    uploads = UploadService(
        sessions=sessions,
        duplicates=duplicates,
        store=store,
        sink=sink,
        quota=quota,
        budget=budget,
        pipeline=pipeline,
        limits=upload_limits(settings),
        active=active,
        instance_id=settings.instance_id,
        cancels=CancelRelay(
            documents,
            instance_id=settings.instance_id,
            poll_seconds=settings.cancel_poll_seconds,
        ),
        in_flight=in_flight,
        settler=settler,
        instances=heartbeats,
    )
    tus = _tus_service(
        settings,
        store=store,
        documents=documents,
        sink=sink,
        quota=quota,
        sessions=sessions,
        duplicates=duplicates,
        budget=budget,
        pipeline=pipeline,
        limits=uploads.limits,
        active=active,
        in_flight=in_flight,
    )
    sweeper = (
        Sweeper(
            documents=documents,
            sessions=sessions,
            heartbeats=heartbeats,
            settler=settler,
            completer=completer,
            tus=tus.lifecycle if tus is not None else None,
        )
        if settler is not None and completer is not None
        else None
    )
    return IngestServices(
        settings=settings,
        verifier=TokenVerifier(secret=settings.jwt_secret, public_key=settings.jwt_public_key),
        sessions=sessions,
        uploads=uploads,
        duplicates=duplicates,
        quota=quota,
        store=store,
        sink=sink,
        budget=budget,
        active=active,
        metrics=metrics,
        tus=tus,
        heartbeats=heartbeats,
        sweeper=sweeper,
    )


def pipeline_config(settings: IngestSettings) -> PipelineConfig:
    return PipelineConfig(
        part_size=settings.part_size,
        parts_in_flight=settings.parts_in_flight,
        progress_interval=settings.progress_interval_seconds,
        event_timeout=settings.event_timeout_seconds,
        # Stopped uploads must be cleaned up well inside the shutdown grace period.
        abort_timeout=max(1.0, min(30.0, settings.shutdown_grace_seconds / 2)),
    )


def upload_limits(settings: IngestSettings) -> UploadLimits:
    return UploadLimits(
        max_size=settings.max_file_size,
        min_size=settings.min_file_size,
        allowed_formats=settings.allowed_formats,
    )


def _tus_service(
    settings: IngestSettings,
    *,
    store: ObjectStore,
    documents: DocumentStore,
    sink: EventSink,
    quota: QuotaView,
    sessions: SessionService,
    duplicates: DuplicateIndex,
    budget: MemoryBudget,
    pipeline: PipelineConfig,
    limits: UploadLimits,
    active: ActiveUploads,
    in_flight: InFlightUploads,
) -> TusService | None:
    """Resumable uploads, when the store can resume a multipart upload from any instance."""
    if not isinstance(store, ResumableObjectStore):
        return None
    return TusService(
        sessions=sessions,
        documents=documents,
        duplicates=duplicates,
        store=store,
        sink=sink,
        quota=quota,
        budget=budget,
        pipeline=pipeline,
        limits=limits,
        active=active,
        in_flight=in_flight,
        instance_id=settings.instance_id,
        config=TusConfig(
            session_ttl_seconds=settings.session_ttl_seconds,
            lease=LeaseTimes(
                lease_seconds=30.0,
                poll_seconds=settings.cancel_poll_seconds,
                wait_seconds=20.0,
            ),
        ),
    )
