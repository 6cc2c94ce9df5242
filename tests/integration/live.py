"""Live-service replicas in the test's event loop, and WebSocket clients that keep what they get.

`running_fanout` serves a real replica (Kafka topic readers, Kafka replays)
on a free port over the module's topics; `Listener` is a WebSocket client
collecting every message in the background, `slow_reader` one that opens the
connection and never reads again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from cli.fanout import serving_fanout
from consumers.fanout.settings import FanoutSettings
from ingest.settings import IngestSettings
from tests.media import async_chunks, fake_video_chunks

Message = dict[str, Any]


@dataclass(frozen=True)
class RunningFanout:
    url: str
    port: int
    runner: web.AppRunner

    def ws_url(self, path: str = "/ws/upload-progress") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


def fanout_settings(settings: IngestSettings, **overrides: Any) -> FanoutSettings:
    base = FanoutSettings(
        kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
        topic_prefix=settings.topic_prefix,
        host="127.0.0.1",
        port=0,
        jwt_secret=settings.jwt_secret,
        lookback_seconds=600,
        s3=settings.s3_endpoint(),
        s3_bucket=settings.s3_bucket,
    )
    return msgspec.structs.replace(base, **overrides)


@asynccontextmanager
async def running_fanout(
    settings: IngestSettings, **overrides: Any
) -> AsyncIterator[RunningFanout]:
    async with serving_fanout(fanout_settings(settings, **overrides)) as runner:
        port = runner.addresses[0][1]
        yield RunningFanout(f"http://127.0.0.1:{port}", port, runner)


@dataclass
class Listener:
    """A WebSocket client whose messages are collected as they arrive."""

    ws: aiohttp.ClientWebSocketResponse
    messages: list[Message] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def start(self) -> Listener:
        self._task = asyncio.create_task(self._collect())
        return self

    async def _collect(self) -> None:
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(message.data))

    async def ready(self) -> Listener:
        """Once a pong came back, the replica has registered this client."""
        await self.ws.send_json({"type": "ping"})
        await self.wait_for(lambda messages: any(m["event_type"] == "pong" for m in messages))
        return self

    def events(self, session_id: str | None = None) -> list[Message]:
        """Messages about uploads (not heartbeats, pongs...), optionally of one upload."""
        return [
            m
            for m in self.messages
            if m["session_id"] is not None and (session_id is None or m["session_id"] == session_id)
        ]

    async def wait_for(
        self, condition: Callable[[list[Message]], bool], within: float = 30
    ) -> None:
        async with asyncio.timeout(within):
            while not condition(self.messages):
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.ws.close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code


async def listen(http: aiohttp.ClientSession, url: str, token: str, **params: str) -> Listener:
    ws = await http.ws_connect(url, params={"token": token, **params})
    return await Listener(ws).start().ready()


def ended(session_id: str) -> Callable[[list[Message]], bool]:
    terminal = {"upload_complete", "upload_error", "upload_cancelled", "duplicate_detected"}
    return lambda messages: any(
        m["session_id"] == session_id and m["event_type"] in terminal for m in messages
    )


async def create_session(
    http: aiohttp.ClientSession, url: str, auth: dict[str, str], size: int
) -> dict[str, Any]:
    async with http.post(
        f"{url}/v1/uploads",
        json={"filename": "live.mp4", "expected_file_size": size},
        headers=auth,
    ) as response:
        body: dict[str, Any] = await response.json()
        assert response.status == 201, body
        return body


async def paced_body(size: int, *, seed: int, pause: float) -> AsyncIterator[bytes]:
    """The file in 1 MiB chunks with a pause after each: an upload that lasts a while."""
    async for chunk in async_chunks(fake_video_chunks(size, seed=seed)):
        yield chunk
        await asyncio.sleep(pause)


async def upload(
    http: aiohttp.ClientSession,
    url: str,
    session: dict[str, Any],
    auth: dict[str, str],
    size: int,
    *,
    seed: int = 1,
    pause: float = 0.0,
) -> dict[str, Any]:
    async with http.put(
        f"{url}{session['upload_url']}",
        data=paced_body(size, seed=seed, pause=pause),
        headers={**auth, "Content-Type": "video/mp4", "Content-Length": str(size)},
    ) as response:
        body: dict[str, Any] = await response.json()
        assert response.status == 201, body
        return body


@asynccontextmanager
async def slow_reader(port: int, path: str) -> AsyncIterator[socket.socket]:
    """A WebSocket connection (handshake done) whose receive buffer is tiny and never read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = await loop.sock_recv(sock, 1)
            assert data, "the server closed during the handshake"
            head += data
        assert head.startswith(b"HTTP/1.1 101"), head
        yield sock
    finally:
        sock.close()


async def metric(http: aiohttp.ClientSession, url: str, name: str) -> float:
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
