"""`ingest sweep`: one pass of the clean-up (`ingest.usecases.sweep`) on the real S3 and Kafka.

What `ingest serve` does every `INGEST_SWEEP_INTERVAL`, as a command: for a
scheduled job (the Kubernetes CronJob), or by hand after an outage. Fails
(ServiceUnavailable) when S3 or Kafka cannot be reached; what fails for one
session is reported and left for the next pass.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from cli.composition import pipeline_config, upload_limits
from infra import layout
from infra.kafka.sink import KafkaEventSink
from infra.s3 import open_s3_client
from ingest.adapters.s3_documents import S3DocumentStore
from ingest.adapters.s3_store import S3ObjectStore
from ingest.settings import IngestSettings
from ingest.usecases.duplicates import DuplicateIndex
from ingest.usecases.instances import Heartbeats
from ingest.usecases.sessions import SessionService, utc_now
from ingest.usecases.sweep.complete import Completer
from ingest.usecases.sweep.settle import Settler
from ingest.usecases.sweep.sweeper import Sweeper, SweepReport
from ingest.usecases.tus.lifecycle import Lifecycle
from ingest.usecases.tus.state import TusSessions
from schemas import Topics


async def sweep_once(settings: IngestSettings, *, rebuild_index: bool = False) -> SweepReport:
    """One pass; with `rebuild_index`, every session that may need it enters the open index
    first (a bucket written before the index existed), so this very pass sweeps it."""
    async with AsyncExitStack() as stack:
        s3 = await stack.enter_async_context(open_s3_client(settings.s3_endpoint()))
        store = S3ObjectStore(s3, settings.s3_bucket)
        documents = S3DocumentStore(s3, settings.s3_bucket, prefix=layout.STATE_PREFIX)
        sink = await stack.enter_async_context(
            KafkaEventSink(
                settings.kafka_bootstrap_servers,
                Topics(settings.topic_prefix),
                source=f"/ingest/{settings.instance_id}",
                timeout=settings.event_timeout_seconds,
            )
        )
        sessions = SessionService(documents, ttl_seconds=settings.session_ttl_seconds)
        pipeline = pipeline_config(settings)
        sweeper = Sweeper(
            documents=documents,
            sessions=sessions,
            heartbeats=Heartbeats(
                documents,
                instance_id=settings.instance_id,
                dead_after_seconds=settings.instance_dead_after_seconds,
            ),
            settler=Settler(sessions=sessions, store=store, sink=sink, pipeline=pipeline),
            completer=Completer(
                sessions=sessions, documents=documents, store=store, sink=sink, pipeline=pipeline
            ),
            tus=Lifecycle(
                TusSessions(sessions, documents, utc_now),
                store,
                sink,
                DuplicateIndex(documents),
                pipeline,
                upload_limits(settings),
                utc_now,
            ),
        )
        indexed = await sweeper.rebuild_index() if rebuild_index else 0
        report = await sweeper.sweep()
        report.indexed = indexed
        return report
