"""The WebSocket feed: `GET /ws/upload-progress` and `/ws/upload-progress/{session_id}`.

Before the upgrade: the token (Authorization header, or `?token=` since a
browser cannot set headers on a WebSocket), the scope (`?all=true` needs the
admin role; a session in the path narrows the feed to it) and the cursor
(`?since=`) are checked, and refused as HTTP 401 / 403 / 400 with the JSON
error body. After it: the hub admits the connection or it is closed with
4429 (too many for the user) or 4503 (the replica is full); a cursor is
replayed (`consumers.fanout.replay`); then this task reads the client's
messages while the client's writer task sends.

How it fails: a client message that is not a documented one is answered
with an `error` message; after `MAX_BAD_MESSAGES` of them the connection is
closed with 4400. Anything that ends the connection unregisters the client
and stops its writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import Any, Final

import msgspec
from aiohttp import WSMsgType, web

from consumers.fanout import closecodes, cursor
from consumers.fanout.client import Client, Outgoing, Scope
from consumers.fanout.http import json_error, principal
from consumers.fanout.hub import LimitReached
from consumers.fanout.messages import notice, render
from consumers.fanout.replay import replay
from consumers.fanout.service import LIVE, LiveService
from infra.errors import Unauthenticated
from schemas.live import ClientMessage, LiveEventType, LiveStats

log = logging.getLogger(__name__)

MAX_BAD_MESSAGES: Final = 10
MAX_CLIENT_MESSAGE: Final = 4096
TRUE: Final = frozenset({"1", "true", "yes"})

_decode_client = msgspec.json.Decoder(ClientMessage)


class _Connection:
    """An aiohttp WebSocketResponse as a client's `Connection`."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self._ws = ws
        self._transport = request.transport

    async def send_str(self, data: str) -> None:
        await self._ws.send_str(data)

    async def close(self, *, code: int, message: bytes) -> bool:
        return await self._ws.close(code=code, message=message)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


async def feed(request: web.Request) -> web.StreamResponse:
    live = request.app[LIVE]
    try:
        user = principal(request, live)
    except Unauthenticated as error:
        return json_error(401, error.error_code, error.message)
    see_all = request.query.get("all", "").lower() in TRUE
    if see_all and not user.is_admin:
        return json_error(403, "FORBIDDEN", "?all=true needs the admin role")
    since = None
    if "since" in request.query:
        try:
            since = cursor.decode(request.query["since"], live.hub.topics)
        except cursor.InvalidCursor as error:
            return json_error(400, "INVALID_CURSOR", str(error), {"field": "since"})
    session_id = request.match_info.get("session_id")
    scope = Scope(user, see_all, {session_id} if session_id else set())

    settings = live.settings
    # No permessage-deflate: a browser offers it, and each message would then be
    # compressed once per client, where the hub encodes it once for all of them.
    ws = web.WebSocketResponse(
        heartbeat=settings.ping_seconds, max_msg_size=MAX_CLIENT_MESSAGE, compress=False
    )
    await ws.prepare(request)
    _limit_send_buffer(request, settings.send_buffer_bytes)
    client = Client(
        _Connection(ws, request),
        scope,
        queue_size=settings.queue_size,
        close_timeout=settings.close_timeout_seconds,
        on_closed=lambda closed, code: _closed(live, closed, code),
    )
    try:
        live_from = live.hub.register(client)
    except LimitReached as refused:
        live.metrics.refused.labels(closecodes.REASONS[refused.code]).inc()
        await ws.close(code=refused.code, message=refused.message.encode())
        return ws
    live.clients.add(client)
    replaying: asyncio.Task[None] | None = None
    if since is not None:
        client.begin_replay()
        replaying = asyncio.create_task(
            replay(
                client,
                live.ranges,
                since,
                live_from,
                topics=live.hub.topics,
                max_events=settings.replay_max_events,
                metrics=live.metrics,
            ),
            name=f"replay-{user.user_id}",
        )
    client.start()
    expiry = None
    if user.expires_at is not None:
        expiry = asyncio.get_running_loop().call_later(
            max(0.0, user.expires_at - time.time()),
            client.kick,
            closecodes.TOKEN_EXPIRED,
            "the token expired",
        )
    try:
        await _read_messages(ws, client, live)
    finally:
        if expiry is not None:
            expiry.cancel()
        live.hub.unregister(client)
        if replaying is not None:
            replaying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replaying
        client.kick(closecodes.NORMAL, "closed")
        await client.wait_closed()
    return ws


async def _read_messages(ws: web.WebSocketResponse, client: Client, live: LiveService) -> None:
    bad = 0
    async for message in ws:
        if message.type is not WSMsgType.TEXT:
            if message.type is WSMsgType.ERROR:
                return
            continue
        try:
            request = _decode_client.decode(message.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            bad += 1
            _answer(
                client,
                live,
                "error",
                {"error_code": "INVALID_MESSAGE", "error_message": str(error)},
            )
            if bad >= MAX_BAD_MESSAGES:
                client.kick(closecodes.BAD_MESSAGE, "too many messages that are not understood")
                return
            continue
        _serve(request, client, live)


def _serve(request: ClientMessage, client: Client, live: LiveService) -> None:
    if request.type == "ping":
        _answer(client, live, "pong", {})
    elif request.type == "get_stats":
        stats = LiveStats(
            connections=live.hub.connections,
            user_connections=live.hub.user_connections(client.user_id),
            subscribed_sessions=sorted(client.scope.sessions),
            queued=client.queued,
            sent=client.sent,
        )
        _answer(client, live, "stats", msgspec.to_builtins(stats))
    elif request.session_id is None:
        _answer(
            client,
            live,
            "error",
            {"error_code": "INVALID_MESSAGE", "error_message": f"{request.type} needs session_id"},
        )
    elif request.type == "subscribe_session":
        client.scope.sessions.add(request.session_id)
    else:
        client.scope.sessions.discard(request.session_id)


def _answer(client: Client, live: LiveService, kind: LiveEventType, data: dict[str, Any]) -> None:
    text = render(notice(kind, None, data), live.hub.cursor(client.floor))
    if not client.offer(Outgoing(text)):
        client.kick(closecodes.TOO_SLOW, "too slow: the send queue is full")


def _closed(live: LiveService, client: Client, code: int) -> None:
    live.clients.discard(client)
    live.hub.unregister(client)
    live.metrics.closed.labels(closecodes.REASONS.get(code, str(code))).inc()


def _limit_send_buffer(request: web.Request, size: int) -> None:
    if size <= 0 or request.transport is None:
        return
    sock = request.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def add_feed_routes(app: web.Application) -> None:
    app.router.add_get("/ws/upload-progress", feed)
    app.router.add_get("/ws/upload-progress/{session_id}", feed)
