"""5xx bodies show no internals, and every response names its request.

A store that fails (here: a bucket that does not exist) produces a real 502
whose S3 error names the bucket and key: the body must carry only a generic
message and the request id, which the log line with those internals carries too.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import pytest

from ingest.settings import IngestSettings
from tests.integration.harness import RunningIngest, running_ingest


@pytest.fixture
async def broken_ingest(settings: IngestSettings) -> AsyncIterator[RunningIngest]:
    missing = msgspec.structs.replace(settings, s3_bucket=f"missing-{uuid.uuid4().hex[:12]}")
    async with running_ingest(missing) as server:
        yield server


async def test_a_storage_failure_body_names_only_the_request_id(
    broken_ingest: RunningIngest,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bucket = broken_ingest.services.settings.s3_bucket
    endpoint = broken_ingest.services.settings.s3_endpoint_url or "127.0.0.1:9000"
    with caplog.at_level(logging.ERROR):
        async with http.post(
            f"{broken_ingest.url}/v1/uploads",
            json={"filename": "clip.mp4"},
            headers=broken_ingest.auth("five-hundred"),
        ) as response:
            text = await response.text()
            assert response.status >= 500, text
            body = msgspec.json.decode(text)
            rid = response.headers["X-Request-Id"]
    assert set(body) == {"error_code", "error_message", "details", "timestamp"}
    assert body["details"] == {"request_id": rid}
    for secret in (bucket, endpoint, "9000", "dashboard-uploads", "five-hundred", "s3"):
        assert secret not in text.lower().replace(rid, ""), text
    # The internals are in the log, under the same request id.
    assert any(rid in record.getMessage() for record in caplog.records)


async def test_every_response_carries_a_request_id(
    ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{ingest.url}/v1/quota", headers=ingest.auth("rid")) as ok:
        assert ok.status == 200
        made = ok.headers["X-Request-Id"]
        assert len(made) >= 16
    sane = "client-chosen.id_42"
    async with http.get(
        f"{ingest.url}/v1/uploads/nope", headers={**ingest.auth("rid"), "X-Request-Id": sane}
    ) as missing:
        assert missing.status == 404
        assert missing.headers["X-Request-Id"] == sane
    hostile = "a b\tc;" + "x" * 300
    async with http.get(f"{ingest.url}/healthz", headers={"X-Request-Id": hostile}) as health:
        replaced = health.headers["X-Request-Id"]
        assert replaced != hostile
        assert replaced.isalnum()


async def test_readiness_names_the_failing_check_but_not_its_internals(
    broken_ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    bucket = broken_ingest.services.settings.s3_bucket
    async with http.get(f"{broken_ingest.url}/readyz") as response:
        text = await response.text()
        assert response.status == 503, text
        assert msgspec.json.decode(text)["checks"]["s3"] == "failed"
        assert bucket not in text
        assert "9000" not in text
