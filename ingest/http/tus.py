"""The tus 1.0.0 routes at /v1/tus/: parse the protocol's headers, call the tus service, answer.

Every response but OPTIONS carries `Tus-Resumable: 1.0.0`, errors included:
they keep the service's JSON error body (`ingest.http.errors`) and add the tus
headers (`Tus-Version` on 412). A request that does not say `Tus-Resumable:
1.0.0` is refused with 412 before anything else. `X-HTTP-Method-Override` on
a POST to an upload is honoured, as the core protocol requires.

Concatenation: a POST with `Upload-Concat: partial` creates a piece of a file
(an upload like any other, answered with the same header); one with
`Upload-Concat: final;<url> <url> ...` and no Upload-Length joins the caller's
finished pieces, in order, and is answered 201 once the file is stored (see
`ingest.usecases.tus.final`). HEAD echoes `Upload-Concat`, and a final's
Upload-Offset only once it is joined; PATCH to a final is 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from ingest.errors import (
    ChecksumMismatch,
    IngestError,
    InvalidConcat,
    SessionNotFound,
    UnsupportedFormat,
    UnsupportedProtocolVersion,
)
from ingest.http import handlers
from ingest.http.body import raw_body
from ingest.http.errors import error_response
from ingest.http.expect import continue_or_refuse, send_continue, unmet_expectation
from ingest.http.requestlog import note_upload
from ingest.http.services import SERVICES, IngestServices
from ingest.usecases.tus.protocol import (
    CHECKSUM_ALGORITHMS,
    EXTENSIONS,
    OFFSET_CONTENT_TYPE,
    SUPPORTED_VERSIONS,
    VERSION,
    Concat,
    PatchRequest,
    UploadInfo,
    check_version,
    http_date,
    parse_checksum,
    parse_concat,
    parse_creation_length,
    parse_length,
    parse_metadata,
    parse_offset,
)
from ingest.usecases.tus.service import Creation, TusService
from ingest.usecases.tus.state import TusSession

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PREFIX = "/v1/tus/"
TUS_CHECKSUM_MISMATCH = 460
"""The checksum extension's status for a chunk whose Upload-Checksum does not match."""

_RESOLVED = web.RequestKey("tus_resolved", TusSession)
"""The upload as the Expect handler found it, so the PATCH does not read it again."""


def tus_endpoint(handler: Handler) -> Handler:
    """Check the protocol version first; answer errors with the tus headers."""

    async def endpoint(request: web.Request) -> web.StreamResponse:
        try:
            check_version(request.headers.get("Tus-Resumable"))
            response = await handler(request)
        except IngestError as error:
            response = tus_error(request, error)
        response.headers["Tus-Resumable"] = VERSION
        return response

    return endpoint


def tus_error(
    request: web.Request, error: IngestError, headers: dict[str, str] | None = None
) -> web.Response:
    status = TUS_CHECKSUM_MISMATCH if isinstance(error, ChecksumMismatch) else None
    response = error_response(error, request, status=status)
    response.headers["Tus-Resumable"] = VERSION
    if isinstance(error, UnsupportedProtocolVersion):
        response.headers["Tus-Version"] = ",".join(SUPPORTED_VERSIONS)
    response.headers.update(headers or {})
    return response


async def options(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    return web.Response(
        status=204,
        headers={
            "Tus-Version": ",".join(SUPPORTED_VERSIONS),
            "Tus-Extension": ",".join(EXTENSIONS),
            "Tus-Max-Size": str(svc.uploads.limits.max_size),
            "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
        },
    )


@tus_endpoint
async def create(request: web.Request) -> web.StreamResponse:
    svc, tus = _services(request)
    user = handlers.principal(request)
    header = request.headers.get("Upload-Metadata")
    metadata = parse_metadata(header)
    metadata_header = header.strip() if metadata and header else None
    concat = parse_concat(request.headers.get("Upload-Concat"))
    if concat is not None and concat.is_final:
        return await _create_final(request, Creation(None, metadata, metadata_header), concat)
    creation = Creation(
        length=parse_creation_length(
            request.headers.get("Upload-Length"), request.headers.get("Upload-Defer-Length")
        ),
        metadata=metadata,
        metadata_header=metadata_header,
        partial=concat is not None,
    )
    with_upload = request.content_type == OFFSET_CONTENT_TYPE
    patch = _patch_request(request, offset=0) if with_upload else None
    session = await tus.create(user, creation)
    location = f"{PREFIX}{session.session_id}"
    headers = {"Location": location, "Upload-Expires": http_date(session.expires_at)}
    if concat is not None:
        headers["Upload-Concat"] = concat.header
    if patch is not None and request.can_read_body:
        body = raw_body(request, svc.settings.body_idle_timeout_seconds)
        note = note_upload(request, session.session_id, "tus")
        try:
            # Just written by this request: not read again before its lease is taken.
            info = await tus.patch(session.session_id, user, patch, body, resolved=session)
        except IngestError as error:
            # The upload exists: the client may resume it from its offset.
            return tus_error(request, error, {"Location": location})
        if info.length is not None and info.offset >= info.length:
            note.completed, note.size = True, info.length
        headers.update(_offset_headers(info))
    elif patch is not None:
        headers["Upload-Offset"] = "0"
    return web.Response(status=201, headers=headers)


async def _create_final(
    request: web.Request, creation: Creation, concat: Concat
) -> web.StreamResponse:
    """`Upload-Concat: final;...`: join the partial uploads; answered once the file is stored."""
    svc, tus = _services(request)
    for name in ("Upload-Length", "Upload-Defer-Length"):
        if name in request.headers:
            raise InvalidConcat(
                f"a final upload takes no {name}: its length is its partial uploads' sum",
                details={"header": name},
            )
    if request.content_length or request.content_type == OFFSET_CONTENT_TYPE:
        raise InvalidConcat(
            "a final upload takes no body: its bytes are its partial uploads'",
            details={"header": "Upload-Concat"},
        )
    session = await tus.create_final(handlers.principal(request), creation, concat)
    note = note_upload(request, session.session_id, "tus")
    note.completed, note.size = True, session.bytes_received
    _count_completed(svc, session.bytes_received)
    return web.Response(status=201, headers={"Location": f"{PREFIX}{session.session_id}"})


@tus_endpoint
async def head(request: web.Request) -> web.StreamResponse:
    _, tus = _services(request)
    try:
        info = await tus.info(request.match_info["session_id"], handlers.principal(request))
    except IngestError as error:
        return tus_error(request, error, {"Cache-Control": "no-store"})
    headers = {"Cache-Control": "no-store"}
    if not info.joining:
        # A final upload's offset is not defined until its partial uploads are joined.
        headers["Upload-Offset"] = str(info.offset)
    if info.concat is not None:
        headers["Upload-Concat"] = info.concat
    if info.length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(info.length)
    if info.metadata_header is not None:
        headers["Upload-Metadata"] = info.metadata_header
    if info.expires_at is not None:
        headers["Upload-Expires"] = http_date(info.expires_at)
    return web.Response(status=200, headers=headers)


@tus_endpoint
async def patch(request: web.Request) -> web.StreamResponse:
    svc, tus = _services(request)
    user = handlers.principal(request)
    request_ = _patch_request(request)
    body = raw_body(request, svc.settings.body_idle_timeout_seconds)
    note = note_upload(request, request.match_info["session_id"], "tus")
    svc.metrics.uploads_in_flight.inc()
    try:
        resolved = request.get(_RESOLVED)
        info = await tus.patch(
            request.match_info["session_id"], user, request_, body, resolved=resolved
        )
    finally:
        svc.metrics.uploads_in_flight.dec()
    if info.expires_at is None and info.length is not None:
        # This request completed the upload.
        note.completed, note.size = True, info.length
        _count_completed(svc, info.length)
    return web.Response(status=204, headers=_offset_headers(info))


def _count_completed(svc: IngestServices, size: int) -> None:
    svc.metrics.uploads.labels("completed").inc()
    svc.metrics.upload_bytes.inc(size)
    svc.metrics.upload_size.observe(size)


@tus_endpoint
async def terminate(request: web.Request) -> web.StreamResponse:
    _, tus = _services(request)
    await tus.terminate(request.match_info["session_id"], handlers.principal(request))
    return web.Response(status=204)


async def override(request: web.Request) -> web.StreamResponse:
    """POST to an upload with X-HTTP-Method-Override: for clients that cannot send PATCH."""
    method = request.headers.get("X-HTTP-Method-Override", "").upper()
    handler = {"PATCH": patch, "DELETE": terminate, "HEAD": head}.get(method)
    if handler is None:
        return tus_error(
            request,
            SessionNotFound(f"POST {request.path} needs X-HTTP-Method-Override: PATCH or DELETE"),
        )
    return await handler(request)


async def expect_any(request: web.Request) -> web.StreamResponse | None:
    """`Expect` on the tus routes that check nothing before the body: 100 Continue, or 417
    with the tus header every tus answer carries."""
    refusal = await continue_or_refuse(request)
    if refusal is not None:
        refusal.headers["Tus-Resumable"] = VERSION
    return refusal


async def expect_patch(request: web.Request) -> web.StreamResponse | None:
    """Answer `Expect: 100-continue` only when the PATCH would be accepted."""
    refusal = unmet_expectation(request)
    if refusal is not None:
        refusal.headers["Tus-Resumable"] = VERSION
        return refusal
    try:
        check_version(request.headers.get("Tus-Resumable"))
        _, tus = _services(request)
        user = handlers.principal(request)
        session_id = request.match_info["session_id"]
        request[_RESOLVED] = await tus.precheck(session_id, user, _patch_request(request))
    except IngestError as error:
        response = tus_error(request, error)
        response.force_close()
        return response
    await send_continue(request)
    return None


def _services(request: web.Request) -> tuple[IngestServices, TusService]:
    svc = request.app[SERVICES]
    if svc.tus is None:
        raise SessionNotFound("resumable uploads are not enabled on this server")
    return svc, svc.tus


def _patch_request(request: web.Request, offset: int | None = None) -> PatchRequest:
    if request.content_type != OFFSET_CONTENT_TYPE:
        raise UnsupportedFormat(
            f"a PATCH body must be sent as {OFFSET_CONTENT_TYPE}, not {request.content_type}",
            details={"content_type": request.content_type},
        )
    return PatchRequest(
        offset=parse_offset(request.headers.get("Upload-Offset")) if offset is None else offset,
        length=parse_length(request.headers.get("Upload-Length")),
        checksum=parse_checksum(request.headers.get("Upload-Checksum")),
        content_length=request.content_length,
    )


def _offset_headers(info: UploadInfo) -> dict[str, str]:
    headers = {"Upload-Offset": str(info.offset)}
    if info.expires_at is not None:
        headers["Upload-Expires"] = http_date(info.expires_at)
    return headers
