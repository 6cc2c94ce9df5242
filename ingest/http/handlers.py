"""Handlers of the session and upload routes. They parse, call a service, and answer.

Errors are raised as domain errors and turned into responses by
`ingest.http.errors.error_middleware`; only the Expect handler, which runs
before any middleware, builds its error responses itself.
"""

from __future__ import annotations

import time

import msgspec
from aiohttp import web

from infra.layout import MAX_USER_ID_LENGTH
from ingest.auth import Principal
from ingest.errors import (
    Forbidden,
    IngestError,
    InvalidRequest,
    Unauthenticated,
    UploadCancelledError,
)
from ingest.http.body import declared_length, multipart_file, raw_body
from ingest.http.decoding import decode_body
from ingest.http.errors import error_response
from ingest.http.responses import (
    json_response,
    quota_response,
    session_status,
    upload_response,
)
from ingest.http.services import SERVICES, IngestServices
from ingest.model import UploadResult
from ingest.usecases import cancellation
from ingest.usecases.sessions import new_session_id
from schemas import QuotaLimitsSet, UploadProtocol
from schemas.api import (
    CreateUploadRequest,
    CreateUploadResponse,
    SessionList,
    SetQuotaRequest,
    UploadInstructions,
    ValidateRequest,
    ValidateResponse,
)
from schemas.api import SessionStatus as ApiSessionStatus

DASHBOARD_PREFIX = "/v1/dashboard/"


def services(request: web.Request) -> IngestServices:
    return request.app[SERVICES]


WEBSOCKET_PREFIX = "/ws/"


def principal(request: web.Request) -> Principal:
    """The caller, from `Authorization: Bearer`; Unauthenticated without a valid one.

    Only WebSocket routes (a browser cannot set headers on one) take `?token=`:
    anywhere else a token in the URL would end up in access logs, so it is
    refused even alongside a good header, for the client to notice and stop.
    """
    verifier = services(request).verifier
    if "token" in request.query:
        if not request.path.startswith(WEBSOCKET_PREFIX):
            raise Unauthenticated(
                "a token in the URL is accepted only on WebSocket routes; "
                "send it in the Authorization header (Bearer)"
            )
        if "Authorization" not in request.headers:
            return verifier.verify(request.query["token"])
    return verifier.from_authorization(request.headers.get("Authorization"))


async def create_upload(request: web.Request) -> web.Response:
    user = principal(request)
    svc = services(request)
    body = decode_body(await request.read() or b"{}", CreateUploadRequest)
    admission = svc.uploads.admission
    file_format = admission.requested_format(body.file_format, body.filename)
    admission.check_expected_size(body.expected_file_size)
    limits = admission.limits
    protocol: UploadProtocol = (
        "dashboard" if request.path.startswith(DASHBOARD_PREFIX) else "stream"
    )
    if body.file_hash:
        # Before the quota: a file already stored is answered, and charged, never again.
        earlier = await svc.duplicates.lookup(user.user_id, body.file_hash.lower())
        if earlier is not None:
            return await _answer_duplicate(request, user, body, earlier.result, protocol)
    session_id = new_session_id()
    # Held from here until the session ends or expires: open sessions count on this instance.
    quota = admission.admit(user.user_id, session_id, body.expected_file_size)
    try:
        session = await svc.sessions.create(
            user, body, protocol=protocol, file_format=file_format, session_id=session_id
        )
    except BaseException:
        admission.in_flight.release(session_id)
        raise
    upload_url = _upload_url(request, session.session_id)
    response = CreateUploadResponse(
        session_id=session.session_id,
        upload_url=upload_url,
        max_file_size=limits.max_size,
        allowed_formats=list(limits.allowed_formats),
        remaining_quota=quota.bytes_remaining,
        quota_limit=quota.bytes_limit,
        session_expires_at=session.expires_at,
        dashboard_context=session.dashboard_context,
        upload_instructions=UploadInstructions(
            method="PUT",
            url=upload_url,
            alternatives=[f"POST {upload_url} (multipart/form-data, field `file`)"],
            part_size=svc.settings.part_size,
            headers={"Authorization": "Bearer <token>", "Content-Type": "video/*"},
            notes="Send the file as the request body; Content-Length lets the server refuse "
            "an oversized file before reading it (Expect: 100-continue is honoured).",
        ),
    )
    return json_response(response, status=201)


async def _answer_duplicate(
    request: web.Request,
    user: Principal,
    body: CreateUploadRequest,
    earlier: UploadResult,
    protocol: UploadProtocol,
) -> web.Response:
    svc = services(request)
    session = await svc.sessions.create(user, body, protocol=protocol, file_format=earlier.format)
    result = msgspec.structs.replace(earlier, duplicate_of=earlier.video_id)
    finished = await svc.sessions.finish(
        session.session_id,
        "completed",
        message="this file was already uploaded",
        bytes_received=result.size_bytes,
        result=result,
    )
    quota = svc.quota.status(user.user_id)
    response = CreateUploadResponse(
        session_id=session.session_id,
        upload_url=_upload_url(request, session.session_id),
        max_file_size=svc.uploads.limits.max_size,
        allowed_formats=list(svc.uploads.limits.allowed_formats),
        remaining_quota=quota.bytes_remaining,
        quota_limit=quota.bytes_limit,
        session_expires_at=session.expires_at,
        dashboard_context=session.dashboard_context,
        upload_instructions=None,
        status="completed",
        duplicate_of=earlier.video_id,
        result=upload_response(finished, result),
    )
    return json_response(response, status=200)


async def upload_file(request: web.Request) -> web.Response:
    user = principal(request)
    svc = services(request)
    session_id = request.match_info["session_id"]
    idle = svc.settings.body_idle_timeout_seconds
    if request.content_type.startswith("multipart/"):
        body, filename, content_type = await multipart_file(request, idle)
        declared = None
    else:
        body, filename = raw_body(request, idle), None
        content_type = request.headers.get("Content-Type")
        declared = declared_length(request)
    svc.metrics.uploads_in_flight.inc()
    started = time.monotonic()
    outcome = "failed"
    try:
        session, result = await svc.uploads.upload(
            session_id, user, body, content_type=content_type, declared_size=declared
        )
        outcome = "completed"
    except UploadCancelledError:
        outcome = "cancelled"
        raise
    except IngestError as error:
        outcome = error.event_code.lower()
        raise
    finally:
        svc.metrics.uploads_in_flight.dec()
        svc.metrics.uploads.labels(outcome).inc()
        svc.metrics.upload_duration.labels(outcome).observe(time.monotonic() - started)
    del filename  # the session's filename names the object; a form's own name is not trusted
    svc.metrics.upload_bytes.inc(result.size_bytes)
    svc.metrics.upload_size.observe(result.size_bytes)
    return json_response(upload_response(session, result), status=201)


async def expect_upload(request: web.Request) -> web.StreamResponse | None:
    """Answer `Expect: 100-continue` only when the body would be accepted."""
    if request.headers.get("Expect", "").lower() != "100-continue":
        raise web.HTTPExpectationFailed(text="only 100-continue is supported")
    try:
        user = principal(request)
        declared = declared_length(request)
        await services(request).uploads.precheck(request.match_info["session_id"], user, declared)
    except IngestError as error:
        response = error_response(error, request)
        response.force_close()
        return response
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    return None


async def get_status(request: web.Request) -> web.Response:
    svc = services(request)
    session = await svc.sessions.get_owned(request.match_info["session_id"], principal(request))
    # Streaming here: this process counts the body as it arrives (the document says 0 until
    # it ends); streaming elsewhere, the document is all there is.
    streaming = svc.active.bytes_received(session.session_id)
    if streaming is not None and session.status == "uploading":
        session = msgspec.structs.replace(session, bytes_received=streaming)
    return json_response(session_status(session))


async def cancel_upload(request: web.Request) -> web.Response:
    """DELETE of any upload: a session is cancelled, a tus upload terminated."""
    svc = services(request)
    await cancellation.cancel_upload(
        request.match_info["session_id"],
        principal(request),
        sessions=svc.sessions,
        uploads=svc.uploads,
        tus=svc.tus,
    )
    return web.Response(status=204)


async def list_sessions(request: web.Request) -> web.Response:
    status = request.query.get("status")
    allowed = ("active", "uploading", "completed", "failed", "cancelled", "expired")
    if status is not None and status not in allowed:
        raise InvalidRequest(
            f"status must be one of {', '.join(allowed)}", details={"field": "status"}
        )
    sessions = await services(request).sessions.list_for_user(
        principal(request).user_id,
        status=status,  # type: ignore[arg-type]
    )
    return json_response(
        SessionList(sessions=[session_status(s) for s in sessions], total=len(sessions))
    )


async def validate_session(request: web.Request) -> web.Response:
    user = principal(request)
    session_id = request.match_info.get("session_id")
    if session_id is None:
        session_id = decode_body(await request.read(), ValidateRequest).session_id
    try:
        session = await services(request).sessions.get_owned(session_id, user)
    except Forbidden:
        return json_response(ValidateResponse(is_valid=False, is_owner=False, session_status=None))
    except IngestError:
        return json_response(ValidateResponse(is_valid=False, is_owner=False, session_status=None))
    status: ApiSessionStatus = session.status
    return json_response(
        ValidateResponse(is_valid=status == "active", is_owner=True, session_status=status)
    )


async def get_quota(request: web.Request) -> web.Response:
    user = principal(request)
    return json_response(quota_response(services(request).quota.status(user.user_id)))


async def set_quota(request: web.Request) -> web.Response:
    admin = principal(request)
    if not admin.is_admin:
        raise Forbidden("setting quotas needs the admin role")
    body = decode_body(await request.read(), SetQuotaRequest)
    user_id = request.match_info["user_id"]
    if len(user_id) > MAX_USER_ID_LENGTH:
        # The same rule as a token's `sub`: no such user can exist.
        raise InvalidRequest(
            f"a user id is at most {MAX_USER_ID_LENGTH} characters", details={"field": "user_id"}
        )
    await services(request).sink.emit(
        QuotaLimitsSet(
            user_id=user_id,
            bytes_limit=body.quota_limit,
            uploads_limit=body.uploads_limit,
            set_by=admin.user_id,
        )
    )
    return json_response(
        {"user_id": user_id, "quota_limit": body.quota_limit, "uploads_limit": body.uploads_limit},
        status=202,
    )


def _upload_url(request: web.Request, session_id: str) -> str:
    if request.path.startswith(DASHBOARD_PREFIX):
        return f"/v1/dashboard/upload/{session_id}"
    return f"/v1/uploads/{session_id}"
