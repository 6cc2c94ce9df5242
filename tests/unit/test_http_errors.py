"""The HTTP edge: every domain error leaves as one JSON body with the status of its type."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from botocore.exceptions import ClientError

from ingest.adapters.s3_calls import storage_error
from ingest.errors import ChecksumMismatch, IngestError, SessionConflict, VersionConflict
from ingest.http.errors import error_middleware

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


async def answer_to(error: IngestError, aiohttp_client: ClientFactory) -> tuple[int, Any]:
    async def fail(request: web.Request) -> web.StreamResponse:
        raise error

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/", fail)
    client = await aiohttp_client(app)
    response = await client.get("/")
    assert response.content_type == "application/json"
    return response.status, await response.json()


async def test_a_lost_compare_and_swap_that_reaches_a_client_is_a_409_naming_no_key(
    aiohttp_client: ClientFactory,
) -> None:
    lost = VersionConflict(
        "document 'sessions/abc.json' already exists",
        details={"key": "sessions/abc.json", "code": "PreconditionFailed"},
    )
    status, body = await answer_to(lost, aiohttp_client)
    assert status == 409
    assert body["error_code"] == "VERSION_CONFLICT"
    assert "sessions/" not in body["error_message"]
    assert set(body["details"]) == {"request_id"}
    assert lost.retriable is True


async def test_a_checksum_s3_refused_is_a_400_naming_no_bucket_or_key(
    aiohttp_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    refused = storage_error(
        "upload_part",
        "private-bucket",
        "dashboard-uploads/ann/u1/clip.mp4",
        ClientError({"Error": {"Code": "BadDigest", "Message": "no"}}, "UploadPart"),
    )
    assert isinstance(refused, ChecksumMismatch)
    with caplog.at_level(logging.WARNING):
        status, body = await answer_to(refused, aiohttp_client)
    assert status == 400  # on a plain route; tus answers its own 460
    assert body["error_message"] == "the stored data did not match its checksum; send it again"
    text = json.dumps(body)
    for internal in ("private-bucket", "dashboard-uploads", "upload_part", "BadDigest"):
        assert internal not in text
    rid = body["details"]["request_id"]
    assert any(rid in r.getMessage() and "private-bucket" in r.getMessage() for r in caplog.records)


async def test_a_client_s_own_checksum_mismatch_keeps_its_details(
    aiohttp_client: ClientFactory,
) -> None:
    mismatch = ChecksumMismatch("the body does not match", details={"algorithm": "sha1"})
    status, body = await answer_to(mismatch, aiohttp_client)
    assert status == 400
    assert body["details"] == {"algorithm": "sha1"}


async def test_a_session_already_used_stays_its_own_409(aiohttp_client: ClientFactory) -> None:
    status, body = await answer_to(SessionConflict("used"), aiohttp_client)
    assert (status, body["error_code"]) == (409, "SESSION_ALREADY_USED")
    assert SessionConflict("used").retriable is False
