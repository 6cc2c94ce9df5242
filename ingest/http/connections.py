"""Connection limits of the ingest server: a header read timeout and a per-process cap.

aiohttp closes a connection that stays idle after a response (its
`keepalive_timeout`, also armed when a connection opens), but it has no separate
deadline for reading a request head and no cap on concurrent connections. Both
live here, in a subclass of the service's `JsonErrorRequestHandler` (so aiohttp's
own refusals stay JSON) that `GuardedSite` hands to the event loop as the
protocol factory:

- a request head must be complete `header_timeout` seconds after the connection
  opened (the first head) or after its first byte arrived (every later head on a
  kept-alive connection); otherwise the connection is closed (silent or slowloris
  clients). An idle kept-alive connection, before any byte of its next head, is
  aiohttp's keep-alive timer's business;
- a connection accepted while `max_connections` are open is answered with a
  503 JSON error and closed at once, without ever reaching aiohttp's server.

Request bodies are not covered: `body_idle_timeout_seconds` watches those.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web

from ingest.http.protocol import JsonErrorRequestHandler
from schemas.api import ErrorBody


class ConnectionLimits(msgspec.Struct, frozen=True, kw_only=True):
    header_timeout: float = 10.0
    keepalive_timeout: float = 15.0
    max_connections: int = 4096


class _Census:
    """Connections open on one site: counted on accept, released on close."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0


def _refusal() -> bytes:
    body = msgspec.json.encode(
        ErrorBody(
            error_code="TOO_MANY_CONNECTIONS",
            error_message="the server has too many open connections, retry shortly",
            details={},
            timestamp=datetime.now(UTC),
        )
    )
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Retry-After: 1\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class GuardedRequestHandler(JsonErrorRequestHandler):
    """The service's protocol (JSON refusals), refusing connections over the cap and closing
    slow heads."""

    def __init__(
        self, manager: web.Server, census: _Census, header_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self._census = census
        self._header_timeout = header_timeout
        self._admitted = False
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        census = self._census
        if census.open >= census.limit:
            # Refused before aiohttp sees it: no parser task, no entry in its connection list.
            assert isinstance(transport, asyncio.Transport)
            transport.write(_refusal())
            transport.close()
            return
        census.open += 1
        self._admitted = True
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self._awaiting_head():
            # The first byte of a later request head: it has `header_timeout` to complete.
            self._arm_header_timer()
        heads = self._request_count
        super().data_received(data)
        if self._request_count != heads and self._header_timer is not None:
            # A head completed (a malformed one too: aiohttp answers it 400 and counts it).
            self._header_timer.cancel()
            self._header_timer = None

    def _awaiting_head(self) -> bool:
        # aiohttp's request loop waits on `_waiter` only between requests, with no
        # complete head queued: bytes arriving then begin the next head, never a body.
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def _arm_header_timer(self) -> None:
        if self._header_timeout > 0:
            self._header_timer = self._loop.call_later(
                self._header_timeout, self._head_overdue, self._request_count
            )

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self._census.open -= 1
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _head_overdue(self, heads: int) -> None:
        self._header_timer = None
        # aiohttp counts every request head it parsed on this connection; none since the
        # timer was armed means the head it was armed for is still incomplete.
        if self._request_count == heads:
            self.force_close()


class GuardedSite(web.BaseSite):
    """A TCP site like `web.TCPSite`, whose connections are `GuardedRequestHandler`s."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        *,
        limits: ConnectionLimits,
        handler_args: dict[str, Any],
        backlog: int,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._limits = limits
        # The same arguments the runner gave aiohttp's own handlers (buffer size, keep-alive).
        self._handler_args = handler_args
        self._census = _Census(limits.max_connections)

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def open_connections(self) -> int:
        return self._census.open

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()

        def protocol() -> GuardedRequestHandler:
            return GuardedRequestHandler(
                server,
                self._census,
                self._limits.header_timeout,
                loop=loop,
                keepalive_timeout=self._limits.keepalive_timeout,
                **self._handler_args,
            )

        self._server = await loop.create_server(
            protocol, self._host, self._port, backlog=self._backlog, reuse_address=True
        )
