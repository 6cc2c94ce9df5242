"""`PUT /v1/admin/quotas/{user_id}` through HTTP: admins only, sane limits only, one command out.

A refused body is a 400 whose message names the problem and whose details name
the field, and nothing reaches `ingest.quota.commands`; an accepted one is
answered 202 and published there once.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import jwt
import pytest

from ingest.settings import IngestSettings
from schemas import QuotaLimitsSet, Topics
from tests.integration.harness import RunningIngest, topic_events

PiB = 1024**5


async def limit_commands(
    settings: IngestSettings, user_id: str, count: int
) -> list[QuotaLimitsSet]:
    """The first `count` limit commands for `user_id`, read from the start of the topic."""
    return await topic_events(
        settings,
        [Topics(settings.topic_prefix).quota_commands],
        QuotaLimitsSet,
        keep=lambda command: command.user_id == user_id,
        until=lambda found: len(found) >= count,
    )


REFUSED: list[tuple[Any, str, str | None]] = [
    ({}, "the request sets no limit", None),
    ({"quota_limit": None, "uploads_limit": None}, "the request sets no limit", None),
    ({"quota_limit": -1}, "Expected `int` >= 0", "quota_limit"),
    ({"uploads_limit": -1}, "Expected `int` >= 0", "uploads_limit"),
    ({"quota_limit": 5 * PiB + 1}, f"Expected `int` <= {5 * PiB}", "quota_limit"),
    ({"uploads_limit": 10**9 + 1}, "Expected `int` <= 1000000000", "uploads_limit"),
    ({"quota_limit": 1.5}, "got `float`", "quota_limit"),
    ({"uploads_limit": True}, "got `bool`", "uploads_limit"),
    ({"quota_limit": "10GiB"}, "got `str`", "quota_limit"),
    ([], "Expected `object`, got `array`", None),
]


async def test_limits_that_are_not_bounded_integers_are_400_and_never_published(
    ingest: RunningIngest, http: aiohttp.ClientSession, settings: IngestSettings
) -> None:
    url = f"{ingest.url}/v1/admin/quotas/carol"
    admin = {"Authorization": f"Bearer {ingest.token('root', admin=True)}"}
    for body, message, field in REFUSED:
        async with http.put(url, json=body, headers=admin) as r:
            assert r.status == 400, (body, await r.text())
            error = await r.json()
        assert error["error_code"] == "INVALID_REQUEST", body
        assert message in error["error_message"], (body, error)
        assert error["details"] == ({"field": field} if field else {}), (body, error)

    async with http.put(url, json={"quota_limit": 5 * PiB, "uploads_limit": 7}, headers=admin) as r:
        assert r.status == 202, await r.text()
        assert await r.json() == {"user_id": "carol", "quota_limit": 5 * PiB, "uploads_limit": 7}

    # One key, one partition, in order: had a refused body been published, it would come first.
    [command] = await limit_commands(settings, "carol", 1)
    assert (command.bytes_limit, command.uploads_limit, command.set_by) == (5 * PiB, 7, "root")


async def test_one_limit_alone_leaves_the_other_to_the_default(
    ingest: RunningIngest, http: aiohttp.ClientSession, settings: IngestSettings
) -> None:
    admin = {"Authorization": f"Bearer {ingest.token('root', admin=True)}"}
    async with http.put(
        f"{ingest.url}/v1/admin/quotas/dave", json={"uploads_limit": 1}, headers=admin
    ) as r:
        assert r.status == 202, await r.text()
    [command] = await limit_commands(settings, "dave", 1)
    assert (command.bytes_limit, command.uploads_limit) == (None, 1)


@pytest.mark.parametrize("roles", ["admin", {"admin": True}, ["viewer"]])
async def test_only_a_list_of_strings_holding_admin_may_set_limits(
    ingest: RunningIngest, http: aiohttp.ClientSession, settings: IngestSettings, roles: object
) -> None:
    assert settings.jwt_secret is not None
    claims = {"sub": "mallory", "roles": roles, "exp": int(time.time()) + 600}
    token = jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
    async with http.put(
        f"{ingest.url}/v1/admin/quotas/mallory",
        json={"quota_limit": 5 * PiB},
        headers={"Authorization": f"Bearer {token}"},
    ) as r:
        assert r.status == 403, await r.text()
        assert (await r.json())["error_code"] == "FORBIDDEN"
    # The same token still identifies its user for everything else.
    async with http.get(
        f"{ingest.url}/v1/quota", headers={"Authorization": f"Bearer {token}"}
    ) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["user_id"] == "mallory"


async def test_user_ids_follow_the_token_rules_and_lookalikes_stay_apart(
    ingest: RunningIngest, http: aiohttp.ClientSession, settings: IngestSettings
) -> None:
    admin = {"Authorization": f"Bearer {ingest.token('root', admin=True)}"}
    too_long = "x" * 257
    async with http.put(
        f"{ingest.url}/v1/admin/quotas/{too_long}", json={"uploads_limit": 3}, headers=admin
    ) as r:
        assert r.status == 400, await r.text()
        assert (await r.json())["details"] == {"field": "user_id"}
    # A user id with a slash reaches the route percent-encoded and is published as it is.
    async with http.put(
        f"{ingest.url}/v1/admin/quotas/team%2FX", json={"uploads_limit": 3}, headers=admin
    ) as r:
        assert r.status == 202, await r.text()
    [command] = await limit_commands(settings, "team/X", 1)
    assert command.uploads_limit == 3
