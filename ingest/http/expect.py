"""The `Expect` request header: only `100-continue` is an expectation this server can meet.

aiohttp runs a route's expect handler before any middleware, and its default
one answers an unknown expectation with a text/plain 417. Every route here
gets `continue_or_refuse` instead (upload routes first check the body would be
accepted), so that answer is the API's JSON error like any other. An HTTP/1.0
request gets no interim response: that version has none.
"""

from __future__ import annotations

from aiohttp import HttpVersion11, web

from ingest.http.errors import json_error

CONTINUE = "100-continue"


def unmet_expectation(request: web.Request) -> web.Response | None:
    """A 417 JSON error when `Expect` names anything but 100-continue; None otherwise."""
    expect = request.headers.get("Expect", "")
    if expect.strip().lower() == CONTINUE:
        return None
    response = json_error(
        417,
        "EXPECTATION_FAILED",
        f"the only expectation supported is {CONTINUE}",
        {"field": "Expect"},
    )
    # The client may already be sending the body it was told to hold back.
    response.force_close()
    return response


async def send_continue(request: web.Request) -> None:
    if request.version == HttpVersion11:
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")


async def continue_or_refuse(request: web.Request) -> web.StreamResponse | None:
    """The expect handler of routes with nothing to check before the body."""
    refusal = unmet_expectation(request)
    if refusal is not None:
        return refusal
    await send_continue(request)
    return None
