"""Why an upload from the client failed, and whether trying again may help."""

from __future__ import annotations

import aiohttp

from infra.describe import in_words


class UploadFailed(Exception):
    def __init__(self, message: str, *, retriable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.status = status

    @property
    def final_for_the_upload(self) -> bool:
        """The server refused this upload for good: resuming it can never succeed.

        A refused token (401) is not: with a good one, the same upload resumes.
        """
        return not self.retriable and self.status is not None and self.status != 401


RETRIABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

TOKEN_HELP = "run `ingest token --user NAME` or copy the token `ingest dev` printed"


def from_response(status: int, body: object) -> UploadFailed:
    code = message = None
    if isinstance(body, dict):
        code = body.get("error_code")
        message = body.get("error_message")
    text = f"{status} {code or ''}: {message or body}".replace("  ", " ")
    if status == 401:
        text += f"; {TOKEN_HELP}"
    # A quota refusal is final until the period resets; retrying does not help.
    retriable = status in RETRIABLE_STATUSES and code != "QUOTA_EXCEEDED"
    return UploadFailed(text, retriable=retriable, status=status)


def connection_failure(server: str, error: BaseException) -> str:
    """What a failed exchange with the server means, in words (never aiohttp's repr)."""
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"cannot reach {server}: {in_words(error.os_error)}"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(error, TimeoutError | aiohttp.ServerTimeoutError):
        return "the server did not answer in time"
    return f"the connection to the server failed: {in_words(error)}"
