"""The `Operation` of each IETF resumable-upload route (draft interop version 8).

Header names follow draft-ietf-httpbis-resumable-upload; the values are
Structured Fields (`?1`/`?0` booleans, integers, a dictionary for `Upload-Limit`).
"""

from __future__ import annotations

from ingest.http.openapi import Header, Operation
from schemas.api import UploadResponse

UPLOAD_COMPLETE = Header(
    "Upload-Complete", "`?1`: this request ends the file; `?0`: more follows", required=True
)
UPLOAD_COMPLETE_OUT = Header("Upload-Complete", "`?1` once the upload is complete, else `?0`")
UPLOAD_LIMIT = Header("Upload-Limit", "limits: `max-size`, `min-size`, `max-age` (seconds)")
UPLOAD_LENGTH = Header("Upload-Length", "total size in bytes, when known", schema_type="integer")
UPLOAD_OFFSET_OUT = Header("Upload-Offset", "bytes stored so far", schema_type="integer")
INTEROP = Header(
    "Upload-Draft-Interop-Version",
    "`8`: the client speaks this draft version and is sent the 104 interim response",
)
LOCATION = Header("Location", "the upload resource, to resume or cancel it")

OPTIONS = Operation(
    summary="Resumable (IETF draft): the limits of resumable uploads",
    responses=((204, "limits", None),),
    response_headers=(UPLOAD_LIMIT,),
    public=True,
)
CREATE = Operation(
    summary="Resumable (IETF draft): start an upload, with all, part or none of the file",
    body="application/octet-stream",
    responses=((201, "the upload resource (Location); its result once complete", UploadResponse),),
    headers=(
        UPLOAD_COMPLETE,
        UPLOAD_LENGTH,
        INTEROP,
        Header("Content-Disposition", "`inline; filename=...`: the file name"),
    ),
    response_headers=(LOCATION, UPLOAD_COMPLETE_OUT, UPLOAD_OFFSET_OUT, UPLOAD_LIMIT),
)
HEAD = Operation(
    summary="Resumable (IETF draft): the offset of an upload",
    responses=((204, "offset", None),),
    response_headers=(UPLOAD_OFFSET_OUT, UPLOAD_COMPLETE_OUT, UPLOAD_LENGTH, UPLOAD_LIMIT),
)
APPEND = Operation(
    summary="Resumable (IETF draft): append at Upload-Offset",
    body="application/partial-upload",
    responses=(
        (201, "complete: the stored upload", UploadResponse),
        (204, "appended; more may follow", None),
    ),
    headers=(
        UPLOAD_COMPLETE,
        Header("Upload-Offset", "where this body starts", required=True, schema_type="integer"),
        UPLOAD_LENGTH,
    ),
    response_headers=(UPLOAD_COMPLETE_OUT, UPLOAD_OFFSET_OUT),
)
CANCEL = Operation(
    summary="Resumable (IETF draft): cancel an upload",
    responses=((204, "cancelled", None),),
)
