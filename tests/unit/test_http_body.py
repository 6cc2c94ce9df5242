"""A raw request body, sized or chunked, reaches the pipeline whole and in order."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from ingest.http.body import FIRST_READ, raw_body

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
received: web.AppKey[list[list[bytes]]] = web.AppKey("received", list)


async def _collect(request: web.Request) -> web.Response:
    chunks = [chunk async for chunk in raw_body(request, idle_timeout=5.0)]
    request.app[received].append(chunks)
    return web.Response(status=204)


async def _client(aiohttp_client: ClientFactory) -> TestClient[Any, Any]:
    app = web.Application()
    app[received] = []
    app.router.add_put("/", _collect)
    return await aiohttp_client(app)


# HTTP chunks ending exactly where the first read ends, empty-looking boundaries,
# single bytes and pieces larger than aiohttp's read buffer.
PIECES = [FIRST_READ, 1, 7, 300_000, FIRST_READ, 1, 600_000, 3]


@pytest.mark.parametrize("chunked", [True, False])
async def test_a_raw_body_arrives_whole(aiohttp_client: ClientFactory, chunked: bool) -> None:
    rng = random.Random(4)
    pieces = [rng.randbytes(n) for n in PIECES]
    data = b"".join(pieces)

    async def body() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    client = await _client(aiohttp_client)
    headers = {} if chunked else {"Content-Length": str(len(data))}
    response = await client.put("/", data=body(), headers=headers)
    assert response.status == 204
    (chunks,) = client.app[received] if client.app is not None else [[]]
    assert b"".join(chunks) == data
    assert all(chunks), "no empty chunk is handed on"
