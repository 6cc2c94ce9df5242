"""The `Operation` of every route in the table: summary, body and response types, headers.

Only what the code cannot tell is written here (which msgspec type a handler
decodes and answers with, and which headers it reads); schemas, paths and
aliases are generated. tus header names follow the tus 1.0.0 core protocol
and its creation, termination, checksum, expiration and concatenation extensions.
"""

from __future__ import annotations

from typing import get_args

from ingest.http.openapi import Header, Operation
from ingest.usecases.tus.protocol import SUPPORTED_VERSIONS
from schemas.api import (
    CreateUploadRequest,
    CreateUploadResponse,
    HealthResponse,
    QuotaResponse,
    ReadinessResponse,
    SessionList,
    SessionStatus,
    SessionStatusResponse,
    SetQuotaRequest,
    SetQuotaResponse,
    UploadResponse,
    ValidateRequest,
    ValidateResponse,
)

EXPECT = Header("Expect", "`100-continue`: answered (or refused) before the body is sent")
TUS_RESUMABLE = Header(
    "Tus-Resumable", "protocol version, `1.0.0`", required=True, choices=SUPPORTED_VERSIONS
)
TUS_RESUMABLE_OUT = Header("Tus-Resumable", "protocol version, `1.0.0`")
UPLOAD_OFFSET = Header(
    "Upload-Offset", "bytes of the upload received so far", schema_type="integer"
)
UPLOAD_EXPIRES = Header("Upload-Expires", "when the unfinished upload expires (HTTP date)")
UPLOAD_LENGTH = Header("Upload-Length", "total size of the upload in bytes", schema_type="integer")
UPLOAD_METADATA = Header("Upload-Metadata", "comma-separated `key base64(value)` pairs")
DEFER_LENGTH = Header("Upload-Defer-Length", "`1`: the length is sent later", schema_type="integer")
UPLOAD_CONCAT = Header(
    "Upload-Concat",
    "concatenation: `partial` creates a piece of a file (no events, no upload count of its "
    "own); `final;<url> <url> ...` (no Upload-Length, no body) joins the caller's finished "
    "pieces in order into one upload, answered 201 once stored. Refusals: 404 "
    "PARTIAL_UPLOAD_NOT_FOUND (unknown, or another user's), 400 PARTIAL_UPLOAD_NOT_FINISHED, "
    "400 PARTIAL_UPLOAD_TOO_SMALL (every piece but the last must hold 5 MiB, S3's smallest "
    "part), 400 INVALID_CONCAT (not a partial upload, listed twice, already joined, ended); "
    "a PATCH to a final is 403 FINAL_UPLOAD_READ_ONLY",
)
UPLOAD_CONCAT_OUT = Header(
    "Upload-Concat", "`partial`, or `final;` and the partial uploads, as the upload was created"
)

SESSION_ERRORS = (403, 404, 502)
"""A session named in the path: another user's (403), unknown or expired (404), S3 failing."""
UPLOAD_ERRORS = (*SESSION_ERRORS, 408, 409, 413, 415, 429)
TUS_ERRORS = (*UPLOAD_ERRORS, 410, 412, 423, 460)

CREATE = Operation(
    summary="Create an upload session",
    body=CreateUploadRequest,
    responses=(
        (201, "session created", CreateUploadResponse),
        (200, "the file_hash was already stored: the earlier result", CreateUploadResponse),
    ),
    errors=(413, 429, 502),
)
LIST = Operation(
    summary="The caller's upload sessions",
    responses=((200, "sessions", SessionList),),
    query=(Header("status", "only sessions in this status", choices=get_args(SessionStatus)),),
    errors=(502,),
)
DIGEST_NOTE = (
    "(RFC 9530) a dictionary such as `sha-256=:<base64 of the 32-byte digest>:`; a `sha-256` "
    "member is verified against the body (400 CHECKSUM_MISMATCH, nothing kept), other "
    "algorithms are ignored, a malformed field is 400 INVALID_REQUEST"
)
UPLOAD_RAW = Operation(
    summary="Stream the file as the raw request body",
    body="application/octet-stream",
    responses=((201, "stored", UploadResponse),),
    headers=(
        EXPECT,
        Header("Repr-Digest", f"digest of the file {DIGEST_NOTE}"),
        Header("Content-Digest", f"digest of the body {DIGEST_NOTE}"),
    ),
    errors=UPLOAD_ERRORS,
)
UPLOAD_MULTIPART = Operation(
    summary="Stream the file as the multipart/form-data field `file`",
    body="multipart/form-data",
    responses=((201, "stored", UploadResponse),),
    headers=(EXPECT,),
    errors=UPLOAD_ERRORS,
)
STATUS = Operation(
    summary="Status of an upload session",
    responses=((200, "status", SessionStatusResponse),),
    errors=SESSION_ERRORS,
)
CANCEL = Operation(
    summary="Cancel an upload session (stops an upload in flight on any instance)",
    responses=((204, "cancelled", None),),
    errors=(*SESSION_ERRORS, 409),
)
VALIDATE = Operation(
    summary="Whether a session is usable by the caller",
    responses=((200, "validity", ValidateResponse),),
    errors=(502,),
)
VALIDATE_BY_BODY = Operation(
    summary="Whether a session (named in the body) is usable by the caller",
    body=ValidateRequest,
    responses=((200, "validity", ValidateResponse),),
    errors=(413, 502),
)
GET_QUOTA = Operation(
    summary="The caller's quota and usage in the current period",
    responses=((200, "quota", QuotaResponse),),
)
SET_QUOTA = Operation(
    summary="Set a user's limits (admin role); applied by the quota consumer",
    body=SetQuotaRequest,
    responses=((202, "accepted", SetQuotaResponse),),
    errors=(403, 413, 502),
)
TUS_OPTIONS = Operation(
    summary="tus: the server's protocol versions, extensions and limits",
    responses=((204, "capabilities", None),),
    response_headers=(
        Header("Tus-Version", "supported protocol versions"),
        Header("Tus-Extension", "supported extensions"),
        Header("Tus-Max-Size", "largest upload in bytes", schema_type="integer"),
        Header("Tus-Checksum-Algorithm", "supported Upload-Checksum algorithms"),
    ),
    public=True,
)
TUS_CREATE = Operation(
    summary="tus: create an upload (a body of type application/offset+octet-stream starts it)",
    responses=((201, "created; Location names the upload (a final one is joined by then)", None),),
    headers=(TUS_RESUMABLE, UPLOAD_LENGTH, DEFER_LENGTH, UPLOAD_METADATA, UPLOAD_CONCAT),
    response_headers=(
        TUS_RESUMABLE_OUT,
        Header("Location", "URL of the new upload"),
        UPLOAD_EXPIRES,
        UPLOAD_OFFSET,
        UPLOAD_CONCAT_OUT,
    ),
    errors=TUS_ERRORS,
)
TUS_HEAD = Operation(
    summary="tus: the offset of an upload",
    responses=((200, "offset", None),),
    headers=(TUS_RESUMABLE,),
    response_headers=(
        TUS_RESUMABLE_OUT,
        UPLOAD_OFFSET,
        UPLOAD_LENGTH,
        DEFER_LENGTH,
        UPLOAD_METADATA,
        UPLOAD_EXPIRES,
        UPLOAD_CONCAT_OUT,
    ),
    errors=TUS_ERRORS,
)
TUS_PATCH_HEADERS = (
    TUS_RESUMABLE,
    Header("Upload-Offset", "offset this chunk starts at", required=True, schema_type="integer"),
    UPLOAD_LENGTH,
    Header("Upload-Checksum", "`algorithm base64(digest)` of this chunk"),
    EXPECT,
)
TUS_PATCH = Operation(
    summary="tus: append a chunk at Upload-Offset (403 for a final upload)",
    body="application/offset+octet-stream",
    responses=((204, "appended", None),),
    headers=TUS_PATCH_HEADERS,
    response_headers=(TUS_RESUMABLE_OUT, UPLOAD_OFFSET, UPLOAD_EXPIRES),
    errors=TUS_ERRORS,
)
TUS_DELETE = Operation(
    summary="tus: terminate an upload",
    responses=((204, "terminated", None),),
    headers=(TUS_RESUMABLE,),
    response_headers=(TUS_RESUMABLE_OUT,),
    errors=TUS_ERRORS,
)
TUS_OVERRIDE = Operation(
    summary="tus: PATCH, DELETE or HEAD for clients that can only POST",
    responses=((204, "as the overridden method", None),),
    headers=(
        Header(
            "X-HTTP-Method-Override",
            "`PATCH`, `DELETE` or `HEAD`",
            required=True,
            choices=("PATCH", "DELETE", "HEAD"),
        ),
        *TUS_PATCH_HEADERS[1:],
        TUS_RESUMABLE,
    ),
    response_headers=(TUS_RESUMABLE_OUT, UPLOAD_OFFSET, UPLOAD_EXPIRES),
    errors=TUS_ERRORS,
)
HEALTHZ = Operation(summary="Liveness", responses=((200, "alive", HealthResponse),), public=True)
READYZ = Operation(
    summary="Readiness: S3 and the quota view reachable, Kafka or room in the event journal",
    responses=(
        (200, "ready", ReadinessResponse),
        (503, "not ready or draining", ReadinessResponse),
    ),
    public=True,
)
METRICS = Operation(
    summary="Prometheus metrics",
    responses=((200, "metrics in the Prometheus text format", None),),
    public=True,
)
OPENAPI = Operation(summary="This document", responses=((200, "OpenAPI 3.1", None),), public=True)
