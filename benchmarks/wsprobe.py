"""WebSocket clients of the live service in their own process, timing each message they get.

`python -m benchmarks.wsprobe URL CLIENTS` reads a JWT secret on stdin's first
line, connects CLIENTS clients to URL (each an admin of its own, `?all=true`,
so every client gets every upload's events), waits until each has answered a
ping, and prints `ready`. From then on it notes, for every message, the time
it arrived (before parsing anything). When stdin closes it prints one JSON
line: per upload event received, `timestamp` (when ingest built the event,
Unix seconds) and `received`, plus how many clients ended early and why.
A separate process, because the benchmark client is busy sending upload
bodies: its event loop would delay receipt and inflate the figures.

A client that cannot connect makes it exit non-zero with the reason.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime

import aiohttp

from infra.tokens import issue_token


def seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def client(
    http: aiohttp.ClientSession, url: str, token: str, arrived: list[tuple[float, str]]
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(url, params={"token": token, "all": "true"}, heartbeat=None)
    await ws.send_str('{"type": "ping"}')
    while True:
        message = await ws.receive(timeout=60)
        if message.type is not aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"a client was closed while connecting: {message}")
        if '"pong"' in message.data:
            break
    return ws


async def collect(ws: aiohttp.ClientWebSocketResponse, arrived: list[tuple[float, str]]) -> str:
    async for message in ws:
        if message.type is aiohttp.WSMsgType.TEXT:
            arrived.append((time.time(), message.data))
    return f"closed {ws.close_code}"


async def probe(url: str, clients: int, secret: str) -> None:
    arrived: list[tuple[float, str]] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        slots = asyncio.Semaphore(50)

        async def connect(n: int) -> aiohttp.ClientWebSocketResponse:
            async with slots:
                token = issue_token(secret, f"watcher-{n}", admin=True, ttl_seconds=86_400)
                return await client(http, url, token, arrived)

        sockets = await asyncio.gather(*(connect(n) for n in range(clients)))
        arrived.clear()
        readers = [asyncio.create_task(collect(ws, arrived)) for ws in sockets]
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.read)
        ended = [task.result() for task in readers if task.done()]
        for task in readers:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    deliveries = []
    for received, text in arrived:
        message = json.loads(text)
        if message["session_id"] is not None:
            deliveries.append(
                {
                    "type": message["event_type"],
                    "session": message["session_id"],
                    "timestamp": seconds(message["timestamp"]),
                    "received": received,
                }
            )
    print(json.dumps({"deliveries": deliveries, "ended_early": ended}), flush=True)


def main() -> None:
    url, clients = sys.argv[1], int(sys.argv[2])
    secret = sys.stdin.readline().strip()
    asyncio.run(probe(url, clients, secret))


if __name__ == "__main__":
    main()
