"""The session routes, their dashboard aliases, quota, duplicates, health and metrics."""

from __future__ import annotations

import aiohttp
import msgspec

from ingest.http.routes import document
from schemas.api import HealthResponse, ReadinessResponse, SetQuotaResponse
from tests.integration.harness import RunningIngest
from tests.media import fake_video, sha256_of


async def test_dashboard_aliases_reach_the_same_sessions(
    ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    auth = ingest.auth("dana")
    async with http.post(
        f"{ingest.url}/v1/dashboard/upload/initiate",
        json={"filename": "clip.webm", "priority": 9, "dashboard_context": {"tab": "library"}},
        headers=auth,
    ) as r:
        assert r.status == 201
        created = await r.json()
    session_id = created["session_id"]
    assert created["upload_url"] == f"/v1/dashboard/upload/{session_id}"
    assert created["dashboard_context"] == {"tab": "library"}
    assert created["allowed_formats"] == ["mp4", "mov", "avi", "mkv", "webm"]
    assert created["quota_limit"] == ingest.services.settings.quota_bytes

    async with http.get(f"{ingest.url}/v1/uploads/{session_id}", headers=auth) as r:
        assert (await r.json())["status"] == "active"
    async with http.get(f"{ingest.url}/v1/dashboard/upload/{session_id}/status", headers=auth) as r:
        assert (await r.json())["status"] == "active"
    async with http.post(
        f"{ingest.url}/v1/dashboard/upload/validate", json={"session_id": session_id}, headers=auth
    ) as r:
        assert await r.json() == {"is_valid": True, "is_owner": True, "session_status": "active"}
    async with http.post(
        f"{ingest.url}/v1/uploads/{session_id}/validate", headers=ingest.auth("eve")
    ) as r:
        assert (await r.json())["is_owner"] is False

    async with http.get(f"{ingest.url}/v1/uploads?status=active", headers=auth) as r:
        listed = await r.json()
    assert [s["session_id"] for s in listed["sessions"]] == [session_id]
    async with http.get(
        f"{ingest.url}/v1/dashboard/upload/sessions", headers=ingest.auth("eve")
    ) as r:
        assert (await r.json())["total"] == 0

    async with http.delete(
        f"{ingest.url}/v1/dashboard/upload/sessions/{session_id}", headers=auth
    ) as r:
        assert r.status == 204
    async with http.get(f"{ingest.url}/v1/uploads/{session_id}", headers=auth) as r:
        assert (await r.json())["status"] == "cancelled"
    async with http.put(
        f"{ingest.url}/v1/dashboard/upload/{session_id}", data=fake_video(4096), headers=auth
    ) as r:
        assert r.status == 409


async def test_a_file_already_stored_is_answered_at_once_as_a_duplicate(
    ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    auth = ingest.auth("dupe")
    data = fake_video(100_000, seed=21)
    async with http.post(f"{ingest.url}/v1/uploads", json={"filename": "a.mp4"}, headers=auth) as r:
        first = await r.json()
    async with http.put(f"{ingest.url}{first['upload_url']}", data=data, headers=auth) as r:
        stored = await r.json()
    assert stored["duplicate_of"] is None

    digest = sha256_of(100_000, seed=21, chunk=100_000)
    assert stored["file_hash"] == digest
    async with http.post(
        f"{ingest.url}/v1/uploads", json={"filename": "b.mp4", "file_hash": digest}, headers=auth
    ) as r:
        assert r.status == 200
        answer = await r.json()
    assert answer["status"] == "completed"
    assert answer["duplicate_of"] == stored["video_id"]
    assert answer["result"]["file_hash"] == digest

    # Streaming the same bytes again also names the original.
    async with http.post(f"{ingest.url}/v1/uploads", json={"filename": "c.mp4"}, headers=auth) as r:
        third = await r.json()
    async with http.put(f"{ingest.url}{third['upload_url']}", data=data, headers=auth) as r:
        again = await r.json()
    assert again["duplicate_of"] == stored["video_id"]


async def test_quota_route_reports_defaults_for_a_new_user(
    ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{ingest.url}/v1/quota", headers=ingest.auth("newbie")) as r:
        quota = await r.json()
    settings = ingest.services.settings
    assert quota["user_id"] == "newbie"
    assert quota["quota_limit"] == settings.quota_bytes
    assert quota["quota_remaining"] == settings.quota_bytes
    assert quota["uploads_limit"] == settings.quota_uploads
    assert quota["usage_percentage"] == 0
    async with http.get(
        f"{ingest.url}/v1/dashboard/upload/quota", headers=ingest.auth("newbie")
    ) as r:
        assert await r.json() == quota


async def test_setting_a_quota_needs_the_admin_role(
    ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    url = f"{ingest.url}/v1/admin/quotas/someone"
    async with http.put(url, json={"quota_limit": 1}, headers=ingest.auth("someone")) as r:
        assert r.status == 403
    admin = {"Authorization": f"Bearer {ingest.token('root', admin=True)}"}
    async with http.put(url, json={"quota_limit": 1, "uploads_limit": 2}, headers=admin) as r:
        assert r.status == 202


async def test_health_readiness_and_metrics(
    ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{ingest.url}/healthz") as r:
        assert r.status == 200
    async with http.get(f"{ingest.url}/readyz") as r:
        assert r.status == 200, await r.text()
        ready = await r.json()
        assert ready["checks"] == {"s3": "ok", "kafka": "ok", "quota": "ok", "journal": "ok"}
        assert ready["journal"] == {
            "events": 0,
            "bytes": 0,
            "oldest_seconds": 0.0,
            "broker_up": True,
        }
    auth = ingest.auth("metered")
    async with http.post(f"{ingest.url}/v1/uploads", json={}, headers=auth) as r:
        session = await r.json()
    async with http.put(
        f"{ingest.url}{session['upload_url']}", data=fake_video(50_000), headers=auth
    ) as r:
        assert r.status == 201
    async with http.get(f"{ingest.url}/metrics") as r:
        text = await r.text()
    assert 'ingest_uploads_total{outcome="completed"} 1.0' in text
    assert "ingest_upload_bytes_total 50000.0" in text
    assert 'ingest_s3_request_seconds_count{operation="put_object"}' in text
    assert "ingest_kafka_send_seconds_count" in text
    assert "ingest_parts_in_flight 0.0" in text  # every part of the finished upload let go


async def test_unknown_routes_answer_json_404(
    ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{ingest.url}/v1/nothing-here") as r:
        assert r.status == 404
        assert set(await r.json()) == {"error_code", "error_message", "details", "timestamp"}


async def test_the_openapi_document_is_served_without_a_token(
    ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{ingest.url}/openapi.json") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        served = await response.json()
    # The very document the unit tests validate (the validator reads files: not in the loop).
    assert served == document()
    # The types it names for the untyped handlers' answers are what they send.
    async with http.get(f"{ingest.url}/healthz") as response:
        msgspec.json.decode(await response.read(), type=HealthResponse)
    async with http.get(f"{ingest.url}/readyz") as response:
        msgspec.json.decode(await response.read(), type=ReadinessResponse)
    admin = {"Authorization": f"Bearer {ingest.token('root', admin=True)}"}
    async with http.put(
        f"{ingest.url}/v1/admin/quotas/openapi-user", json={"uploads_limit": 7}, headers=admin
    ) as response:
        assert response.status == 202
        msgspec.json.decode(await response.read(), type=SetQuotaResponse)
