"""Why an upload from the client failed, and whether trying again may help."""

from __future__ import annotations


class UploadFailed(Exception):
    def __init__(self, message: str, *, retriable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.status = status


RETRIABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def from_response(status: int, body: object) -> UploadFailed:
    code = message = None
    if isinstance(body, dict):
        code = body.get("error_code")
        message = body.get("error_message")
    text = f"{status} {code or ''}: {message or body}".replace("  ", " ")
    # A quota refusal is final until the period resets; retrying does not help.
    retriable = status in RETRIABLE_STATUSES and code != "QUOTA_EXCEEDED"
    return UploadFailed(text, retriable=retriable, status=status)
