"""The request id: taken from a sane incoming `X-Request-Id`, or made, and sent back on every
response.

It ties a response to the server's log lines: a 5xx body carries it instead of
the internals the log keeps. It never fails: an incoming id that is not a short
token (a log-injection attempt, an over-long value) is replaced, not refused.
"""

from __future__ import annotations

import re
import uuid

from aiohttp import web

HEADER = "X-Request-Id"

_REQUEST_ID = web.RequestKey("request_id", str)
# Printable, no spaces or separators a log line or header could be split on.
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id(request: web.BaseRequest) -> str:
    """This request's id, the same on every call."""
    known: str | None = request.get(_REQUEST_ID)
    if known is not None:
        return known
    incoming = request.headers.get(HEADER, "")
    chosen = incoming if _SANE.fullmatch(incoming) else new_request_id()
    request[_REQUEST_ID] = chosen
    return chosen


async def send_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare` hook: every response, streamed or not, names its request."""
    response.headers[HEADER] = request_id(request)
