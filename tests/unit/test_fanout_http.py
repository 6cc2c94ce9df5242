"""The live service's HTTP routes over a hub fed by hand: progress, results, health, CORS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from aiohttp.test_utils import TestClient

from consumers.fanout.app import fanout_app
from consumers.fanout.service import LiveService
from consumers.fanout.settings import FanoutSettings
from infra.cors import cors_policy
from infra.layout import detection_by_video
from infra.objects import LocalDocuments
from infra.tokens import issue_token
from schemas.api import VideoResults
from tests.samples import pending_results
from tests.unit.fanout_fakes import FakeRanges, hub, record, upload_event

SECRET = "unit-test-secret-of-at-least-32-bytes!"
ORIGIN = "https://app.example.com"


def service() -> LiveService:
    settings = FanoutSettings(jwt_secret=SECRET, cors=cors_policy(ORIGIN))
    the_hub = hub()
    done = msgspec.structs.replace(upload_event("completed", "alice", "a1", 4), duplicate_of=None)
    the_hub.handle(record(done, "t.uploads", 0, 0))
    return LiveService(settings, the_hub, FakeRanges(), settings.verifier(), the_hub.metrics, [])


def bearer(user: str, *, admin: bool = False) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, user, admin=admin)}"}


async def test_progress_answers_the_owner_and_admins_only(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    app = fanout_app(service(), LocalDocuments(tmp_path))
    client: TestClient[Any, Any] = await aiohttp_client(app)
    for path in ("/v1/uploads/a1/progress", "/v1/dashboard/upload/progress/a1"):
        response = await client.get(path, headers=bearer("alice"))
        assert response.status == 200
        body = await response.json()
        assert body["status"] == "completed"
        assert body["redirect_url"].startswith("/dashboard/videos/")
    assert (await client.get("/v1/uploads/a1/progress", headers=bearer("root", admin=True))).ok
    other = await client.get("/v1/uploads/a1/progress", headers=bearer("bob"))
    assert other.status == 403
    assert (await other.json())["error_code"] == "FORBIDDEN"
    unknown = await client.get("/v1/uploads/zz/progress", headers=bearer("alice"))
    assert unknown.status == 404
    assert set(await unknown.json()) == {"error_code", "error_message", "details", "timestamp"}
    assert (await client.get("/v1/uploads/a1/progress")).status == 401
    in_url = await client.get(
        "/v1/uploads/a1/progress", params={"token": issue_token(SECRET, "alice")}
    )
    assert in_url.status == 401


async def test_health_metrics_and_cross_origin(aiohttp_client: Any, tmp_path: Path) -> None:
    app = fanout_app(service(), LocalDocuments(tmp_path))
    client: TestClient[Any, Any] = await aiohttp_client(app)
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200  # no reader to wait for here
    assert "fanout_records_total 1.0" in await (await client.get("/metrics")).text()
    preflight = await client.options(
        "/v1/uploads/a1/progress",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status in (200, 204)
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    refused = await client.options(
        "/v1/uploads/a1/progress",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert refused.status == 403


async def test_the_stand_alone_service_answers_a_video_s_results(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    documents = LocalDocuments(tmp_path)
    stored = pending_results("v-1")
    await documents.write(detection_by_video("alice", "v-1"), msgspec.json.encode(stored))
    client: TestClient[Any, Any] = await aiohttp_client(fanout_app(service(), documents))
    own = await client.get("/v1/videos/v-1/results", headers=bearer("alice"))
    assert own.status == 200
    assert msgspec.json.decode(await own.read(), type=VideoResults) == stored
    assert (await client.get("/v1/videos/v-1/results", headers=bearer("bob"))).status == 404
    assert (await client.get("/v1/videos/v-1/results")).status == 401
