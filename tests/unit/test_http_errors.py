"""The HTTP edge: every domain error leaves as one JSON body with the status of its type."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from ingest.errors import IngestError, SessionConflict, VersionConflict
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


async def test_a_lost_compare_and_swap_that_reaches_a_client_is_a_409(
    aiohttp_client: ClientFactory,
) -> None:
    lost = VersionConflict("document 'k' already exists", details={"key": "k"})
    status, body = await answer_to(lost, aiohttp_client)
    assert status == 409
    assert body["error_code"] == "VERSION_CONFLICT"
    assert body["error_message"] == "document 'k' already exists"
    assert body["details"] == {"key": "k"}
    assert lost.retriable is True


async def test_a_session_already_used_stays_its_own_409(aiohttp_client: ClientFactory) -> None:
    status, body = await answer_to(SessionConflict("used"), aiohttp_client)
    assert (status, body["error_code"]) == (409, "SESSION_ALREADY_USED")
    assert SessionConflict("used").retriable is False
