"""The whole quota loop on the real stack: two ingest instances, the real quota consumer process.

An admin's limits, set through one instance, reach every instance through the
consumer's snapshot; an upload completed on one instance is refused on the other
once the snapshot charges it.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from ingest.settings import IngestSettings
from tests.integration.harness import RunningIngest, running_ingest
from tests.integration.quota_processes import quota_process
from tests.media import fake_video


async def quota_of(http: aiohttp.ClientSession, server: RunningIngest, user: str) -> dict[str, int]:
    async with http.get(f"{server.url}/v1/quota", headers=server.auth(user)) as r:
        assert r.status == 200, await r.text()
        answer: dict[str, int] = await r.json()
        return answer


async def until_quota(
    http: aiohttp.ClientSession, server: RunningIngest, user: str, field: str, value: int
) -> float:
    """Seconds until the instance reports `field` == `value` for the user (30 s at most)."""
    started = time.monotonic()
    async with asyncio.timeout(30):
        while (await quota_of(http, server, user))[field] != value:
            await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_limits_and_usage_reach_every_instance_through_the_consumer(
    settings: IngestSettings, http: aiohttp.ClientSession
) -> None:
    user = "looped"
    async with (
        quota_process(settings),
        running_ingest(settings) as first,
        running_ingest(settings) as second,
    ):
        admin = {"Authorization": f"Bearer {first.token('root', admin=True)}"}
        async with http.put(
            f"{first.url}/v1/admin/quotas/{user}", json={"uploads_limit": 1}, headers=admin
        ) as r:
            assert r.status == 202, await r.text()
        for server in (first, second):
            await until_quota(http, server, user, "uploads_limit", 1)

        auth = first.auth(user)
        async with http.post(
            f"{first.url}/v1/uploads", json={"filename": "one.mp4"}, headers=auth
        ) as r:
            assert r.status == 201, await r.text()
            session = await r.json()
        async with http.put(
            f"{first.url}{session['upload_url']}", data=fake_video(20_000, seed=5), headers=auth
        ) as r:
            assert r.status == 201, await r.text()

        # The other instance never saw the upload: only the consumer's snapshot tells it.
        await until_quota(http, second, user, "uploads_used", 1)
        assert (await quota_of(http, second, user))["quota_used"] == 20_000
        for server in (first, second):
            async with http.post(
                f"{server.url}/v1/uploads",
                json={"filename": "two.mp4"},
                headers=server.auth(user),
            ) as r:
                assert r.status == 429, await r.text()
                assert (await r.json())["error_code"] == "QUOTA_EXCEEDED"
