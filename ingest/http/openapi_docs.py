"""The `Operation` of every route in the table: summary, body and response types, headers.

Only what the code cannot tell is written here (which msgspec type a handler
decodes and answers with, and which headers it reads); schemas, paths and
aliases are generated. tus header names follow the tus 1.0.0 core protocol
and its creation, termination, checksum and expiration extensions.
"""

from __future__ import annotations

from ingest.http.openapi import Header, Operation
from schemas.api import (
    CreateUploadRequest,
    CreateUploadResponse,
    HealthResponse,
    QuotaResponse,
    ReadinessResponse,
    SessionList,
    SessionStatusResponse,
    SetQuotaRequest,
    SetQuotaResponse,
    UploadResponse,
    ValidateRequest,
    ValidateResponse,
)

EXPECT = Header("Expect", "`100-continue`: answered (or refused) before the body is sent")
TUS_RESUMABLE = Header("Tus-Resumable", "protocol version, `1.0.0`", required=True)
TUS_RESUMABLE_OUT = Header("Tus-Resumable", "protocol version, `1.0.0`")
UPLOAD_OFFSET = Header(
    "Upload-Offset", "bytes of the upload received so far", schema_type="integer"
)
UPLOAD_EXPIRES = Header("Upload-Expires", "when the unfinished upload expires (HTTP date)")
UPLOAD_LENGTH = Header("Upload-Length", "total size of the upload in bytes", schema_type="integer")
UPLOAD_METADATA = Header("Upload-Metadata", "comma-separated `key base64(value)` pairs")
DEFER_LENGTH = Header("Upload-Defer-Length", "`1`: the length is sent later", schema_type="integer")

CREATE = Operation(
    summary="Create an upload session",
    body=CreateUploadRequest,
    responses=(
        (201, "session created", CreateUploadResponse),
        (200, "the file_hash was already stored: the earlier result", CreateUploadResponse),
    ),
)
LIST = Operation(
    summary="The caller's upload sessions",
    responses=((200, "sessions", SessionList),),
    query=(Header("status", "only sessions in this status, e.g. `active`"),),
)
UPLOAD_RAW = Operation(
    summary="Stream the file as the raw request body",
    body="application/octet-stream",
    responses=((201, "stored", UploadResponse),),
    headers=(EXPECT,),
)
UPLOAD_MULTIPART = Operation(
    summary="Stream the file as the multipart/form-data field `file`",
    body="multipart/form-data",
    responses=((201, "stored", UploadResponse),),
    headers=(EXPECT,),
)
STATUS = Operation(
    summary="Status of an upload session",
    responses=((200, "status", SessionStatusResponse),),
)
CANCEL = Operation(
    summary="Cancel an upload session (stops an upload in flight on any instance)",
    responses=((204, "cancelled", None),),
)
VALIDATE = Operation(
    summary="Whether a session is usable by the caller",
    responses=((200, "validity", ValidateResponse),),
)
VALIDATE_BY_BODY = Operation(
    summary="Whether a session (named in the body) is usable by the caller",
    body=ValidateRequest,
    responses=((200, "validity", ValidateResponse),),
)
GET_QUOTA = Operation(
    summary="The caller's quota and usage in the current period",
    responses=((200, "quota", QuotaResponse),),
)
SET_QUOTA = Operation(
    summary="Set a user's limits (admin role); applied by the quota consumer",
    body=SetQuotaRequest,
    responses=((202, "accepted", SetQuotaResponse),),
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
    responses=((201, "created; Location names the upload", None),),
    headers=(TUS_RESUMABLE, UPLOAD_LENGTH, DEFER_LENGTH, UPLOAD_METADATA),
    response_headers=(
        TUS_RESUMABLE_OUT,
        Header("Location", "URL of the new upload"),
        UPLOAD_EXPIRES,
        UPLOAD_OFFSET,
    ),
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
    ),
)
TUS_PATCH_HEADERS = (
    TUS_RESUMABLE,
    Header("Upload-Offset", "offset this chunk starts at", required=True, schema_type="integer"),
    UPLOAD_LENGTH,
    Header("Upload-Checksum", "`algorithm base64(digest)` of this chunk"),
    EXPECT,
)
TUS_PATCH = Operation(
    summary="tus: append a chunk at Upload-Offset",
    body="application/offset+octet-stream",
    responses=((204, "appended", None),),
    headers=TUS_PATCH_HEADERS,
    response_headers=(TUS_RESUMABLE_OUT, UPLOAD_OFFSET, UPLOAD_EXPIRES),
)
TUS_DELETE = Operation(
    summary="tus: terminate an upload",
    responses=((204, "terminated", None),),
    headers=(TUS_RESUMABLE,),
    response_headers=(TUS_RESUMABLE_OUT,),
)
TUS_OVERRIDE = Operation(
    summary="tus: PATCH, DELETE or HEAD for clients that can only POST",
    responses=((204, "as the overridden method", None),),
    headers=(
        Header("X-HTTP-Method-Override", "`PATCH`, `DELETE` or `HEAD`", required=True),
        *TUS_PATCH_HEADERS[1:],
        TUS_RESUMABLE,
    ),
    response_headers=(TUS_RESUMABLE_OUT, UPLOAD_OFFSET, UPLOAD_EXPIRES),
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
