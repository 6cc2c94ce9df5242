"""A tus rig for unit tests: ingest apps over the in-memory fakes, any number of instances.

Instances built by one rig share the bucket, the documents, the event sink and
the clock, like instances behind a load balancer share S3 and Kafka. No test
lives here; the tus test modules import the rig.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from infra.cors import CorsPolicy
from ingest.adapters.journal.sink import JournaledEventSink
from ingest.auth import TokenVerifier, issue_token
from ingest.http.app import build_app
from ingest.http.metrics import IngestMetrics
from ingest.http.services import IngestServices
from ingest.pipeline.budget import MemoryBudget
from ingest.pipeline.config import PipelineConfig
from ingest.settings import IngestSettings
from ingest.usecases.admission import UploadLimits
from ingest.usecases.cancels import CancelRelay
from ingest.usecases.duplicates import DuplicateIndex
from ingest.usecases.instances import Heartbeats
from ingest.usecases.sessions import SessionService
from ingest.usecases.sweep.settle import Settler
from ingest.usecases.tus.concat import JoinLimits
from ingest.usecases.tus.lease import LeaseTimes
from ingest.usecases.tus.service import TusConfig, TusService
from ingest.usecases.tus.state import TusSession, TusSessions
from ingest.usecases.uploads import ActiveUploads, UploadService
from schemas import UploadEvent
from tests.fakes import FixedQuotaView, MemoryDocumentStore, MemoryObjectStore, RecordingEventSink

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"
PART = 1024
MAX = 1024 * 1024
TTL = 3600.0
DEAD_AFTER = 30.0

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


class Clock:
    """Wall-clock time the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Instance:
    services: IngestServices
    client: TestClient[Any, Any]

    @property
    def tus(self) -> TusService:
        assert self.services.tus is not None
        return self.services.tus


@dataclass
class TusRig:
    store: MemoryObjectStore = field(default_factory=MemoryObjectStore)
    documents: MemoryDocumentStore = field(default_factory=MemoryDocumentStore)
    sink: RecordingEventSink = field(default_factory=RecordingEventSink)
    journal: JournaledEventSink | None = None
    """When set, the services emit through it (it decorates `sink`)."""
    quota: FixedQuotaView = field(default_factory=FixedQuotaView)
    clock: Clock = field(default_factory=Clock)
    max_size: int = MAX
    min_size: int = 0
    lease: LeaseTimes = field(
        default_factory=lambda: LeaseTimes(lease_seconds=30.0, poll_seconds=0.02, wait_seconds=5.0)
    )
    idle_timeout: float = 60.0
    join: JoinLimits = field(default_factory=lambda: JoinLimits(min_part=4 * PART))
    """S3's limits on joined parts, scaled down to this rig's part size."""
    cors: CorsPolicy = field(default_factory=CorsPolicy)

    def services(self, instance_id: str) -> IngestServices:
        settings = IngestSettings(
            jwt_secret=SECRET,
            max_file_size=self.max_size,
            min_file_size=self.min_size,
            part_size=PART,
            session_ttl_seconds=TTL,
            cancel_poll_seconds=self.lease.poll_seconds,
            body_idle_timeout_seconds=self.idle_timeout,
            instance_id=instance_id,
            cors=self.cors,
        )
        sessions = SessionService(self.documents, ttl_seconds=TTL, clock=self.clock)
        duplicates = DuplicateIndex(self.documents)
        budget = MemoryBudget(64 * PART)
        active = ActiveUploads()
        pipeline = PipelineConfig(part_size=PART, parts_in_flight=3, progress_interval=3600.0)
        limits = UploadLimits(
            max_size=self.max_size,
            min_size=self.min_size,
            allowed_formats=("mp4", "mov", "avi", "mkv", "webm"),
        )
        common: dict[str, Any] = {
            "sessions": sessions,
            "duplicates": duplicates,
            "store": self.store,
            "sink": self.journal or self.sink,
            "quota": self.quota,
            "budget": budget,
            "pipeline": pipeline,
            "limits": limits,
            "active": active,
            "instance_id": instance_id,
        }
        tus = TusService(
            **common,
            documents=self.documents,
            config=TusConfig(session_ttl_seconds=TTL, lease=self.lease, join=self.join),
            clock=self.clock,
        )
        return IngestServices(
            settings=settings,
            verifier=TokenVerifier(secret=SECRET),
            uploads=UploadService(
                **common,
                cancels=CancelRelay(
                    self.documents, instance_id=instance_id, poll_seconds=self.lease.poll_seconds
                ),
                settler=Settler(
                    sessions=sessions, store=self.store, sink=self.sink, pipeline=pipeline
                ),
                instances=self.heartbeats(instance_id),
            ),
            metrics=IngestMetrics(),
            tus=tus,
            **{k: common[k] for k in ("sessions", "duplicates", "quota", "store", "sink")},
            budget=budget,
            active=active,
        )

    def heartbeats(self, instance_id: str) -> Heartbeats:
        """The heartbeat of an instance of this rig (the rig's apps do not beat by themselves)."""
        return Heartbeats(
            self.documents, instance_id=instance_id, dead_after_seconds=DEAD_AFTER, clock=self.clock
        )

    async def instance(self, client_factory: ClientFactory, name: str = "a") -> Instance:
        services = self.services(name)
        return Instance(services, await client_factory(build_app(services)))

    def events(self, upload_id: str) -> list[UploadEvent]:
        return self.sink.for_upload(upload_id)

    async def session(self, upload_id: str) -> TusSession:
        sessions = SessionService(self.documents, ttl_seconds=TTL, clock=self.clock)
        session, _ = await TusSessions(sessions, self.documents, self.clock).load(upload_id)
        return session


def auth(user: str = "ann", **headers: str) -> dict[str, str]:
    token = issue_token(SECRET, user)
    return {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0", **headers}


def patch_headers(offset: int, user: str = "ann", **headers: str) -> dict[str, str]:
    return auth(
        user,
        **{
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
            **headers,
        },
    )


def metadata_header(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def checksum_header(algorithm: str, data: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


async def create(
    client: TestClient[Any, Any], length: int | None, user: str = "ann", **headers: str
) -> str:
    """Create an upload; its id."""
    sizes = {"Upload-Length": str(length)} if length is not None else {"Upload-Defer-Length": "1"}
    meta = {"Upload-Metadata": metadata_header(filename="clip.mp4")}
    response = await client.post("/v1/tus/", headers=auth(user, **sizes, **meta, **headers))
    assert response.status == 201, await response.text()
    location = response.headers["Location"]
    assert location.startswith("/v1/tus/")
    return location.rsplit("/", 1)[-1]


async def send(
    client: TestClient[Any, Any], upload_id: str, offset: int, data: bytes, **headers: str
) -> int:
    """PATCH `data` at `offset`; the new offset (asserting 204)."""
    response = await client.patch(
        f"/v1/tus/{upload_id}", data=data, headers=patch_headers(offset, **headers)
    )
    assert response.status == 204, await response.text()
    return int(response.headers["Upload-Offset"])


async def head_offset(client: TestClient[Any, Any], upload_id: str, user: str = "ann") -> int:
    response = await client.head(f"/v1/tus/{upload_id}", headers=auth(user))
    assert response.status == 200, response.status
    return int(response.headers["Upload-Offset"])


def error_body(text: str) -> dict[str, Any]:
    """The service's JSON error body, checked to have exactly its four fields."""
    body: dict[str, Any] = json.loads(text)
    assert set(body) == {"error_code", "error_message", "details", "timestamp"}
    return body
