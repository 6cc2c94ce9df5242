"""Resumable uploads for HTTP (the IETF draft, interop version 8) at /v1/resumable.

The same uploads as tus, spoken as the IETF draft speaks them: an upload starts
with any `POST /v1/resumable` carrying `Upload-Complete` (the body may be all of
the file, part of it, or nothing); the upload resource `/v1/resumable/{id}`
answers `HEAD` with its offset, takes `PATCH` bodies of type
`application/partial-upload` at `Upload-Offset`, and `DELETE`. Underneath it is
a tus upload (`ingest.usecases.tus`): the same session, size, format and quota
rules, the same events, resumable through any instance, and visible through
the tus routes too. The file name comes from `Content-Disposition`, its media
type from `Content-Type`.

What the draft adds over tus: a `104 (Upload Resumption Supported)` interim
response naming the upload resource before the body is read (only to clients
that send `Upload-Draft-Interop-Version: 8`, as the draft requires), the end
of an upload said by the client (`Upload-Complete: ?1`; the length may stay
unknown until then), and the final response of a completed upload is the
upload's result, as a one-shot `PUT` would answer.

How it fails: every error keeps the service's JSON body and adds
`Upload-Complete: ?0`; an offset mismatch is 409 with the right `Upload-Offset`
and the draft's problem type as extra members of that body. A request
without a valid `Upload-Complete` is 400.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import msgspec
from aiohttp import web
from aiohttp.multipart import content_disposition_filename, parse_content_disposition

from ingest.errors import IngestError, InvalidRequest, OffsetMismatch, UnsupportedFormat
from ingest.http import handlers
from ingest.http.body import raw_body
from ingest.http.errors import error_response
from ingest.http.responses import json_response, upload_response
from ingest.http.services import SERVICES, IngestServices
from ingest.usecases.tus.protocol import PatchRequest, UploadInfo
from ingest.usecases.tus.service import Creation, TusService

PREFIX = "/v1/resumable"
INTEROP_VERSION = "8"
PARTIAL_UPLOAD = "application/partial-upload"
MISMATCHING_OFFSET = "https://iana.org/assignments/http-problem-types#mismatching-upload-offset"

_INTEGER = re.compile(r"^[0-9]{1,15}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def sf_boolean(value: str | None) -> bool | None:
    """A Structured Field Item Boolean (`?1` / `?0`), parameters ignored; None otherwise."""
    if value is None:
        return None
    item = value.split(";", 1)[0].strip()
    return {"?1": True, "?0": False}.get(item)


def sf_integer(value: str | None, name: str) -> int | None:
    """A non-negative Structured Field Item Integer, or None when absent; 400 when malformed."""
    if value is None:
        return None
    item = value.split(";", 1)[0].strip()
    if not _INTEGER.match(item):
        raise InvalidRequest(f"{name} must be a non-negative integer", details={"header": name})
    return int(item)


def _complete_flag(request: web.Request) -> bool:
    complete = sf_boolean(request.headers.get("Upload-Complete"))
    if complete is None:
        raise InvalidRequest(
            "a resumable upload request needs Upload-Complete: ?1 (this request ends the file) "
            "or ?0 (more follows)",
            details={"header": "Upload-Complete"},
        )
    return complete


def _limits(svc: IngestServices, expires_at: datetime | None = None) -> str:
    limits = svc.uploads.limits
    fields = [f"max-size={limits.max_size}", f"min-size={limits.min_size}"]
    if expires_at is not None:
        remaining = int((expires_at - datetime.now(UTC)).total_seconds())
        fields.append(f"max-age={max(remaining, 0)}")
    return ", ".join(fields)


def _services(request: web.Request) -> tuple[IngestServices, TusService]:
    svc = request.app[SERVICES]
    if svc.tus is None:
        raise InvalidRequest("resumable uploads are not enabled on this server")
    return svc, svc.tus


def resumable_endpoint(handler: Handler) -> Handler:
    """Errors in the service's JSON shape, marked as not completing the upload."""

    async def endpoint(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except IngestError as error:
            return _error(request, error)

    return endpoint


def _error(request: web.Request, error: IngestError, offset: int | None = None) -> web.Response:
    response = error_response(error, request)
    response.headers["Upload-Complete"] = "?0"
    if isinstance(error, OffsetMismatch):
        expected = offset if offset is not None else error.details.get("offset")
        if isinstance(expected, int):
            response.headers["Upload-Offset"] = str(expected)
        body = msgspec.json.decode(response.body or b"{}")  # type: ignore[arg-type]
        body |= {
            "type": MISMATCHING_OFFSET,
            "title": "offset from request does not match offset of resource",
            "expected-offset": expected,
            "provided-offset": request.headers.get("Upload-Offset"),
        }
        response.body = msgspec.json.encode(body)
        response.content_type = "application/problem+json"
    return response


async def options(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    return web.Response(status=204, headers={"Upload-Limit": _limits(svc)})


@resumable_endpoint
async def create(request: web.Request) -> web.StreamResponse:
    svc, tus = _services(request)
    user = handlers.principal(request)
    complete = _complete_flag(request)
    declared = sf_integer(request.headers.get("Upload-Length"), "Upload-Length")
    content_length = request.content_length
    length = _consistent_length(declared, content_length if complete else None, offset=0)
    session = await tus.create(user, Creation(length, _metadata(request), None))
    location = f"{PREFIX}/{session.session_id}"
    if request.headers.get("Upload-Draft-Interop-Version") == INTEROP_VERSION:
        await _announce(request, location, _limits(svc, session.expires_at))
    if not complete and not content_length:
        # Only the upload resource was asked for: nothing to stream yet.
        headers = {"Location": location, "Upload-Complete": "?0", "Upload-Offset": "0"}
        return web.Response(status=201, headers=headers)
    try:
        response = await _append(request, tus, session.session_id, 0, complete, length)
    except IngestError as error:
        failed = _error(request, error)
        failed.headers["Location"] = location  # the client may resume from the offset
        return failed
    response.headers["Location"] = location
    if response.status == 204:
        response.set_status(201)
    return response


@resumable_endpoint
async def head(request: web.Request) -> web.StreamResponse:
    svc, tus = _services(request)
    info = await tus.info(request.match_info["session_id"], handlers.principal(request))
    headers = {
        "Upload-Offset": str(info.offset),
        "Upload-Complete": "?1" if _completed(info) else "?0",
        "Upload-Limit": _limits(svc, info.expires_at),
        "Cache-Control": "no-store",
    }
    if info.length is not None:
        headers["Upload-Length"] = str(info.length)
    return web.Response(status=204, headers=headers)


@resumable_endpoint
async def append(request: web.Request) -> web.StreamResponse:
    _, tus = _services(request)
    if request.content_type != PARTIAL_UPLOAD:
        raise UnsupportedFormat(
            f"an append must be sent as {PARTIAL_UPLOAD}, not {request.content_type}",
            details={"content_type": request.content_type},
        )
    offset = sf_integer(request.headers.get("Upload-Offset"), "Upload-Offset")
    if offset is None:
        raise InvalidRequest("an append needs Upload-Offset", details={"header": "Upload-Offset"})
    complete = _complete_flag(request)
    declared = sf_integer(request.headers.get("Upload-Length"), "Upload-Length")
    end = request.content_length if complete else None
    length = _consistent_length(declared, end, offset=offset)
    return await _append(request, tus, request.match_info["session_id"], offset, complete, length)


@resumable_endpoint
async def cancel(request: web.Request) -> web.StreamResponse:
    _, tus = _services(request)
    await tus.terminate(request.match_info["session_id"], handlers.principal(request))
    return web.Response(status=204)


async def _append(
    request: web.Request,
    tus: TusService,
    session_id: str,
    offset: int,
    complete: bool,
    length: int | None,
) -> web.StreamResponse:
    """Stream the body at `offset`; the final response when `complete`, else 204."""
    svc = request.app[SERVICES]
    user = handlers.principal(request)
    patch = PatchRequest(offset=offset, length=length, content_length=request.content_length)
    body = raw_body(request, svc.settings.body_idle_timeout_seconds)
    try:
        info = await tus.patch(session_id, user, patch, body)
    except OffsetMismatch as error:
        current = await tus.info(session_id, user)
        return _error(request, error, offset=current.offset)
    if complete and info.length is None:
        # The length was never said: this request's end is the file's end.
        ending = PatchRequest(offset=info.offset, length=info.offset, content_length=0)
        info = await tus.patch(session_id, user, ending, _nothing())
    if complete and not _completed(info):
        raise InvalidRequest(
            "Upload-Complete: ?1, but the upload holds fewer bytes than its length",
            details={"offset": info.offset, "upload_length": info.length},
        )
    if complete:
        session, _ = await tus.sessions.load(session_id)
        assert session.result is not None
        response = json_response(upload_response(session, session.result), status=201)
        response.headers["Upload-Complete"] = "?1"
        return response
    return web.Response(
        status=204, headers={"Upload-Complete": "?0", "Upload-Offset": str(info.offset)}
    )


def _completed(info: UploadInfo) -> bool:
    return info.length is not None and info.offset >= info.length and info.expires_at is None


def _consistent_length(declared: int | None, remaining: int | None, *, offset: int) -> int | None:
    """The upload's length from Upload-Length and/or a completing request's Content-Length."""
    implied = None if remaining is None else offset + remaining
    if declared is not None and implied is not None and declared != implied:
        raise InvalidRequest(
            "Upload-Length does not match the offset plus this request's Content-Length",
            details={"upload_length": declared, "implied": implied},
        )
    return declared if declared is not None else implied


def _metadata(request: web.Request) -> dict[str, str]:
    metadata: dict[str, str] = {}
    disposition = request.headers.get("Content-Disposition")
    if disposition:
        _, params = parse_content_disposition(disposition)
        filename = content_disposition_filename(params, "filename")
        if filename:
            metadata["filename"] = filename
    if request.content_type and request.content_type != "application/octet-stream":
        metadata["filetype"] = request.content_type
    return metadata


async def _announce(request: web.Request, location: str, limits: str) -> None:
    """The 104 interim response: where to resume, sent before the body is read."""
    if request.version < (1, 1):
        return
    await request.writer.write(
        b"HTTP/1.1 104 Upload Resumption Supported\r\n"
        + f"Location: {location}\r\nUpload-Limit: {limits}\r\n".encode()
        + f"Upload-Draft-Interop-Version: {INTEROP_VERSION}\r\n\r\n".encode()
    )


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""
