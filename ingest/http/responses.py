"""API response bodies built from the write path's own types."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from ingest.model import UploadResult, UploadSession
from ingest.ports import QuotaStatus
from schemas.api import QuotaResponse, SessionStatusResponse, UploadResponse

_encoder = msgspec.json.Encoder()

# Rough analysis cost: a fixed start-up plus decoding time per byte, for the client's display.
_ANALYSIS_BASE_SECONDS = 5.0
_ANALYSIS_BYTES_PER_SECOND = 50 * 1024 * 1024

_MESSAGES = {
    "active": "waiting for the file",
    "uploading": "upload in progress",
    "completed": "upload completed",
    "failed": "upload failed",
    "cancelled": "upload cancelled",
    "expired": "the session expired",
}


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_encoder.encode(body), content_type="application/json")


def result_url(video_id: str) -> str:
    return f"/dashboard/videos/{video_id}/results"


def upload_response(session: UploadSession, result: UploadResult) -> UploadResponse:
    estimate = (
        _ANALYSIS_BASE_SECONDS + result.size_bytes / _ANALYSIS_BYTES_PER_SECOND
        if session.auto_analyze
        else 0.0
    )
    return UploadResponse(
        video_id=result.video_id,
        analysis_id=result.analysis_id,
        upload_status="completed",
        redirect_url=result_url(result.video_id),
        estimated_processing_time=round(estimate, 1),
        filename=session.filename,
        file_size=result.size_bytes,
        file_hash=result.sha256,
        format=result.format,
        s3_key=result.s3_key,
        created_at=session.created_at,
        uploaded_at=result.completed_at,
        metadata=session.metadata,
        duplicate_of=result.duplicate_of,
    )


def session_status(session: UploadSession) -> SessionStatusResponse:
    return SessionStatusResponse(
        session_id=session.session_id,
        status=session.status,
        message=session.message or _MESSAGES[session.status],
        filename=session.filename,
        expected_file_size=session.expected_file_size,
        bytes_received=session.bytes_received,
        created_at=session.created_at,
        expires_at=session.expires_at,
        updated_at=session.updated_at,
        error_code=session.error_code,
        result=upload_response(session, session.result) if session.result else None,
    )


def quota_response(status: QuotaStatus) -> QuotaResponse:
    percentage = 100.0 * status.bytes_used / status.bytes_limit if status.bytes_limit else 100.0
    return QuotaResponse(
        user_id=status.user_id,
        quota_limit=status.bytes_limit,
        quota_used=status.bytes_used,
        quota_remaining=status.bytes_remaining,
        usage_percentage=round(percentage, 2),
        uploads_limit=status.uploads_limit,
        uploads_used=status.uploads_used,
        period_start=status.period_start,
        reset_date=status.period_end,
    )
