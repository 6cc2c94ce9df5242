"""What the HTTP handlers reach: the services of one ingest process."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from ingest.auth import TokenVerifier
from ingest.http.metrics import IngestMetrics
from ingest.pipeline.budget import MemoryBudget
from ingest.ports import EventSink, ObjectStore, QuotaView
from ingest.settings import IngestSettings
from ingest.usecases.duplicates import DuplicateIndex
from ingest.usecases.instances import Heartbeats
from ingest.usecases.sessions import SessionService
from ingest.usecases.sweep.sweeper import Sweeper
from ingest.usecases.tus.service import TusService
from ingest.usecases.uploads import ActiveUploads, UploadService


@dataclass(frozen=True)
class IngestServices:
    settings: IngestSettings
    verifier: TokenVerifier
    sessions: SessionService
    uploads: UploadService
    duplicates: DuplicateIndex
    quota: QuotaView
    store: ObjectStore
    sink: EventSink
    budget: MemoryBudget
    active: ActiveUploads
    metrics: IngestMetrics
    tus: TusService | None = None
    """Resumable uploads; None when the object store cannot resume a multipart upload."""
    heartbeats: Heartbeats | None = None
    """This instance's heartbeat, written while it serves; None: no heartbeat (tests)."""
    sweeper: Sweeper | None = None
    """The clean-up run every `sweep_interval_seconds`; None: none in this process."""


SERVICES = web.AppKey("services", IngestServices)
