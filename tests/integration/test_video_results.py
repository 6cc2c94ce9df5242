"""`GET /v1/videos/{video_id}/results` over the result documents in the real MinIO.

Each user reads their own videos' documents; another user's video and a video
that does not exist answer the same 404; no token or a token in the URL is 401.
A replica of the live service (`ingest consume fanout`) answers the route from
the bucket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from consumers.detection.outcomes import Outcomes
from consumers.fanout.results import add_results_route
from infra.s3 import open_s3_client
from infra.s3_objects import S3Documents
from ingest.auth import TokenVerifier, issue_token
from ingest.settings import IngestSettings
from schemas.api import VideoResults
from tests.integration.live import running_fanout
from tests.samples import pending_results

SECRET = "integration-test-secret-at-least-32-bytes"
OTHER_SECRET = "another-secret-of-at-least-32-bytes"


@pytest.fixture
async def client(
    settings: IngestSettings, aiohttp_client: Any
) -> AsyncIterator[tuple[TestClient[Any, Any], Outcomes]]:
    async with open_s3_client(settings.s3_endpoint()) as s3:
        documents = S3Documents(s3, settings.s3_bucket)
        app = web.Application()
        add_results_route(app, documents, TokenVerifier(secret=SECRET))
        yield await aiohttp_client(app), Outcomes(documents)


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, user)}"}


async def test_a_user_reads_their_video_and_nobody_else_can_tell_it_exists(
    client: tuple[TestClient[Any, Any], Outcomes],
) -> None:
    http, outcomes = client
    # Ids that would collide in a naive key: the layout keeps them apart.
    await outcomes.save_video("team/a", pending_results("v-1"))
    async with http.get("/v1/videos/v-1/results", headers=bearer("team/a")) as answer:
        assert answer.status == 200
        assert answer.headers["Cache-Control"] == "no-store"
        body = msgspec.json.decode(await answer.read(), type=VideoResults)
    assert body.status == "pending"
    assert (body.video_id, body.filename, body.size) == ("v-1", "clip.mp4", 1234)
    unknown = await http.get("/v1/videos/v-2/results", headers=bearer("team/a"))
    other = await http.get("/v1/videos/v-1/results", headers=bearer("team_a"))
    for answer in (unknown, other):
        assert answer.status == 404
        body_404 = await answer.json()
        assert body_404["error_code"] == "NOT_FOUND"
        assert set(body_404) == {"error_code", "error_message", "details", "timestamp"}
    dots = await http.get("/v1/videos/..%2F..%2Fx/results", headers=bearer("team/a"))
    assert dots.status == 404


async def test_without_a_valid_bearer_token_the_answer_is_401(
    client: tuple[TestClient[Any, Any], Outcomes],
) -> None:
    http, outcomes = client
    await outcomes.save_video("alice", pending_results("v-9"))
    token = issue_token(SECRET, "alice")
    for headers, query in (
        ({}, ""),
        ({"Authorization": "Bearer not-a-token"}, ""),
        ({"Authorization": f"Bearer {issue_token(OTHER_SECRET, 'alice')}"}, ""),
        (bearer("alice"), f"?token={token}"),
    ):
        async with http.get(f"/v1/videos/v-9/results{query}", headers=headers) as answer:
            assert answer.status == 401
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await answer.json())["error_code"] == "UNAUTHORIZED"


async def test_the_live_service_answers_from_the_bucket(
    settings: IngestSettings, client: tuple[TestClient[Any, Any], Outcomes]
) -> None:
    _, outcomes = client
    await outcomes.save_video("carol", pending_results("v-7"))
    async with running_fanout(settings) as fanout, aiohttp.ClientSession() as http:
        url = f"{fanout.url}/v1/videos/v-7/results"
        async with http.get(url, headers=bearer("carol")) as answer:
            assert answer.status == 200
            body = msgspec.json.decode(await answer.read(), type=VideoResults)
        assert (body.video_id, body.status) == ("v-7", "pending")
        async with http.get(url, headers=bearer("dave")) as other:
            assert other.status == 404
