"""Users whose ids look alike never see each other's sessions or files, through HTTP."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import jwt
import pytest

from infra.s3 import open_s3, warm_session
from ingest.settings import IngestSettings
from tests.integration.harness import RunningIngest
from tests.media import fake_video, sha256_of

LOOKALIKE_PAIRS = [("a/b", "a_b"), ("auth0|1", "auth0_1"), (" alice", "alice")]


def bearer(ingest: RunningIngest, claims: dict[str, Any]) -> dict[str, str]:
    secret = ingest.services.settings.jwt_secret
    assert secret is not None
    token = jwt.encode({"exp": int(time.time()) + 600, **claims}, secret, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


async def upload(
    ingest: RunningIngest, http: aiohttp.ClientSession, auth: dict[str, str], data: bytes
) -> dict[str, Any]:
    async with http.post(
        f"{ingest.url}/v1/uploads", json={"filename": "own.mp4"}, headers=auth
    ) as r:
        assert r.status == 201, await r.text()
        session = await r.json()
    async with http.put(f"{ingest.url}{session['upload_url']}", data=data, headers=auth) as r:
        assert r.status == 201, await r.text()
        stored: dict[str, Any] = await r.json()
    return {**stored, "session_id": session["session_id"]}


async def state_keys(settings: IngestSettings) -> set[str]:
    async with open_s3(await warm_session(), settings.s3_endpoint()) as s3:
        keys: set[str] = set()
        async for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.s3_bucket):
            keys.update(item["Key"] for item in page.get("Contents", []))
        return keys


@pytest.mark.parametrize(("first", "second"), LOOKALIKE_PAIRS)
async def test_lookalike_users_see_only_their_own_sessions_and_files(
    ingest: RunningIngest, http: aiohttp.ClientSession, first: str, second: str
) -> None:
    seed = sum(map(ord, first + second))
    first_auth = bearer(ingest, {"sub": first})
    second_auth = bearer(ingest, {"sub": second})
    first_upload = await upload(ingest, http, first_auth, fake_video(20_000, seed=seed))
    second_upload = await upload(ingest, http, second_auth, fake_video(20_000, seed=seed + 1))
    assert first_upload["s3_key"] != second_upload["s3_key"]

    for auth, own in ((first_auth, first_upload), (second_auth, second_upload)):
        async with http.get(f"{ingest.url}/v1/uploads", headers=auth) as r:
            listed = await r.json()
        assert [s["session_id"] for s in listed["sessions"]] == [own["session_id"]]

    # The other user's file hash is not a duplicate: the session must be uploaded.
    digest = sha256_of(20_000, seed=seed, chunk=20_000)
    assert first_upload["file_hash"] == digest
    async with http.post(
        f"{ingest.url}/v1/uploads",
        json={"filename": "x.mp4", "file_hash": digest},
        headers=second_auth,
    ) as r:
        assert r.status == 201
        assert (await r.json()).get("duplicate_of") is None
    async with http.get(
        f"{ingest.url}/v1/uploads/{first_upload['session_id']}", headers=second_auth
    ) as r:
        assert r.status == 403


@pytest.mark.parametrize("subject", ["..", ".", "x" * 256, "a\x00b", "é" * 256, "../../etc"])
async def test_any_string_up_to_256_characters_uploads_normally(
    ingest: RunningIngest, http: aiohttp.ClientSession, subject: str
) -> None:
    auth = bearer(ingest, {"sub": subject})
    stored = await upload(ingest, http, auth, fake_video(5_000, seed=len(subject)))
    async with http.get(f"{ingest.url}/v1/uploads", headers=auth) as r:
        listed = await r.json()
    assert [s["session_id"] for s in listed["sessions"]] == [stored["session_id"]]
    assert stored["s3_key"] in await state_keys(ingest.services.settings)


@pytest.mark.parametrize("claims", [{"sub": "x" * 257}, {"sub": ""}, {"sub": 7}, {}])
async def test_a_subject_that_names_no_user_is_401_and_leaves_nothing(
    ingest: RunningIngest, http: aiohttp.ClientSession, claims: dict[str, Any]
) -> None:
    before = await state_keys(ingest.services.settings)
    async with http.post(
        f"{ingest.url}/v1/uploads", json={"filename": "a.mp4"}, headers=bearer(ingest, claims)
    ) as r:
        assert r.status == 401
        assert (await r.json())["error_code"] == "UNAUTHORIZED"
    assert await state_keys(ingest.services.settings) == before
