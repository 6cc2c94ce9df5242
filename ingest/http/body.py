"""Request bodies as async iterators of chunks, whatever way the client sends the file.

A raw body (PUT, Content-Length or chunked) is read as it arrives; a
multipart/form-data body is read up to its `file` field, whose content is then
streamed. Nothing is read ahead beyond aiohttp's own flow-control buffer.
aiohttp puts no time limit on reading a body, so every read here is bounded by
`idle_timeout`: a client that stops sending raises TimeoutError, which the
pipeline reports as TIMEOUT, instead of holding its upload open for ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, web

from ingest.errors import InvalidRequest

READ_SIZE = 1024 * 1024


async def raw_body(request: web.Request, idle_timeout: float) -> AsyncIterator[bytes]:
    while True:
        async with asyncio.timeout(idle_timeout):
            chunk = await request.content.readany()
        if not chunk:
            return
        yield chunk


async def multipart_file(
    request: web.Request, idle_timeout: float
) -> tuple[AsyncIterator[bytes], str | None, str | None]:
    """The `file` field's chunks, its filename and its content type."""
    if not request.content_type.startswith("multipart/"):
        raise InvalidRequest(
            "expected a multipart/form-data body with a `file` field",
            details={"field": "file"},
        )
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            raise InvalidRequest("the form has no `file` field", details={"field": "file"})
        if isinstance(part, BodyPartReader) and part.name == "file":
            return (
                _part_chunks(part, idle_timeout),
                part.filename,
                part.headers.get("Content-Type"),
            )
        # Small fields before the file are skipped; they cannot carry the file.
        if isinstance(part, BodyPartReader):
            await part.release()


async def _part_chunks(part: BodyPartReader, idle_timeout: float) -> AsyncIterator[bytes]:
    while True:
        async with asyncio.timeout(idle_timeout):
            chunk = await part.read_chunk(READ_SIZE)
        if not chunk:
            return
        yield chunk


def declared_length(request: web.Request) -> int | None:
    """The body size the client declared, for a raw body; None for chunked or multipart."""
    if request.content_type.startswith("multipart/"):
        return None
    length = request.content_length
    if length is not None and length < 0:
        raise InvalidRequest("Content-Length must not be negative")
    return length
