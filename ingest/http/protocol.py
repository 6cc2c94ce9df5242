"""The connection handler: requests aiohttp refuses before any handler runs answered as JSON.

aiohttp answers a request it cannot parse (a header over 8190 bytes, a broken
request line, a bad chunk size) from `RequestHandler.handle_error`, before the
application and its middlewares see it, as text/plain. `IngestRunner` serves
the app through `JsonErrorRequestHandler`, whose `handle_error` keeps aiohttp's
logging and checks and answers in the API's error shape instead, with a request
id. A 5xx here (an exception that escaped the app, a handler timeout) shows only
a generic message and the request id.
How it fails: as aiohttp's own: when a response already started, ConnectionError
(the connection is dropped).
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from ingest.http.errors import json_error, server_error
from ingest.http.requestid import HEADER, request_id

log = logging.getLogger(__name__)


class JsonErrorRequestHandler(RequestHandler):
    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own logs the error and raises when a response already started.
        super().handle_error(request, status, exc, message)
        rid = request_id(request)
        if status >= 500:
            log.error("request %s failed before the app answered: %r", rid, exc)
            response = server_error(status, rid)
        else:
            phrase = HTTPStatus(status).phrase
            code = phrase.upper().replace(" ", "_")
            # aiohttp's message names the limit passed ("Got more than 8190 bytes ...").
            response = json_error(status, code, message or phrase)
            response.headers[HEADER] = rid
        response.force_close()
        return response


class JsonErrorServer(web.Server):
    """aiohttp's Server, making JsonErrorRequestHandler connections."""

    def __call__(self) -> RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class IngestRunner(web.AppRunner):
    """An AppRunner whose connections answer aiohttp's own refusals as JSON."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return JsonErrorServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **made._kwargs,
        )
