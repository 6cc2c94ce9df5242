"""Request bodies as async iterators of chunks, whatever way the client sends the file.

A raw body (PUT, Content-Length or chunked) is read as it arrives; a
multipart/form-data body is read up to its `file` field, whose content is then
streamed. Nothing is read ahead beyond aiohttp's own flow-control buffer, which
is widened to `READ_SIZE` once a body is being read past its first few KiB (and
not before: a body waiting for memory should hold as little as the server's
`read_bufsize`).
Chunks of a raw body, sized or chunked, are handed on one at a time as aiohttp
received them, never joined (a join would copy every byte once more). aiohttp
puts no time limit on reading a body, so every read that has to wait is
bounded by `idle_timeout`: a client that stops sending raises TimeoutError,
which the pipeline reports as TIMEOUT, instead of holding its upload open for
ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage

from ingest.errors import InvalidRequest, UploadTimeout

READ_SIZE = 256 * 1024
"""Bytes aiohttp may buffer ahead for a body being read (its high-water mark is twice this)."""
FIRST_READ = 4096
"""Bytes of a body read before the rest: enough for any container's magic bytes."""
MULTIPART_READ_SIZE = 1024 * 1024
"""Bytes asked of a form field at a time."""


def raw_body(request: web.Request, idle_timeout: float) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive, each read that has to wait bounded by `idle_timeout`.

    A body with a Content-Length and a chunked one are read alike: one chunk at
    a time as aiohttp buffered it (never joined), so the chunk that passes a
    limit is refused whole, with what arrived with it.
    """
    return _buffered_chunks(request, idle_timeout)


async def _buffered_chunks(request: web.Request, idle_timeout: float) -> AsyncIterator[bytes]:
    content = request.content
    # The first chunk is small: the pipeline looks at the first bytes, then may
    # wait for memory, and until then the rest of what aiohttp holds stays there,
    # within its own (small, unwidened) flow-control window.
    async with asyncio.timeout(idle_timeout):
        chunk = await content.read(FIRST_READ)
    if not chunk:
        return
    consumed = len(chunk)
    yield chunk
    # Below this, the transport is paused and resumed (two syscalls) for nearly
    # every read from the socket (asyncio reads up to 256 KiB at a time), which
    # costs a small `read_bufsize` (cheap waiting connections) 15% more CPU per
    # byte. Memory held for a body being read: up to twice this, plus one read.
    # (aiohttp before 3.13 has no such knob and keeps its default.)
    widen = getattr(content, "set_read_chunk_size", None)
    if widen is not None:
        widen(READ_SIZE)
    while True:
        if content.total_bytes > consumed:
            # Already buffered: no wait, so no timer to arm and cancel.
            chunk, chunk_ended = await content.readchunk()
        else:
            async with asyncio.timeout(idle_timeout):
                chunk, chunk_ended = await content.readchunk()
        if not chunk:
            if chunk_ended:
                continue  # the end of an HTTP chunk (chunked encoding), not of the body
            return
        consumed += len(chunk)
        yield chunk


async def multipart_file(
    request: web.Request, idle_timeout: float
) -> tuple[AsyncIterator[bytes], str | None, str | None]:
    """The `file` field's chunks, its filename and its content type.

    InvalidRequest when the body is not a well-formed form with a `file` field
    (missing or broken boundary, garbage), UploadTimeout when the client stalls
    before the field; both before anything is claimed or stored. A form broken
    inside the file surfaces from the chunks, where the pipeline ends the upload.
    """
    if not request.content_type.startswith("multipart/"):
        raise InvalidRequest(
            "expected a multipart/form-data body with a `file` field",
            details={"field": "file"},
        )
    try:
        reader = await request.multipart()
        while True:
            async with asyncio.timeout(idle_timeout):
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
                async with asyncio.timeout(idle_timeout):
                    await part.release()
    except (ValueError, BadHttpMessage) as error:
        # aiohttp's reader raises ValueError (UnicodeDecodeError included) for a
        # missing, over-long or unmatched boundary and for garbage where a part's
        # headers should be: the client's mistake, refused before any byte is stored.
        # Cut short: aiohttp quotes the boundary, which may be as long as a header.
        raise InvalidRequest(
            f"the multipart/form-data body is malformed: {str(error)[:200]}",
            details={"field": "file"},
        ) from None
    except TimeoutError:
        raise UploadTimeout("the client stopped sending the form before its `file` field") from None


async def _part_chunks(part: BodyPartReader, idle_timeout: float) -> AsyncIterator[bytes]:
    while True:
        async with asyncio.timeout(idle_timeout):
            chunk = await part.read_chunk(MULTIPART_READ_SIZE)
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
