"""A fault-injecting HTTP proxy in front of the real S3 server, on loopback, for fault tests.

Every request is forwarded to the S3 server as it came (method, raw path and
query, headers with the client's `Host`, so its SigV4 signature still holds;
the body is read whole first: parts in these tests are a few MiB). A `Faults`
plan picks, per S3 operation, which calls fail instead: a 503 `SlowDown` or a
500 `InternalError` whose message names the bucket and key (as real S3 errors
may, so a test can see the service never passes them on), or a stall of
`stall_seconds` before forwarding. Objects whose key contains a word of
`always_fail` fail on every call of the operations named for it, except the
part uploads of parts up to `spared_parts`: those are forwarded untouched (no
random fault either), and the object's failing part uploads are answered only
once its spared parts are stored, so such an upload surely holds exactly those
parts when it fails, however the machine schedules the calls.

With no faults planned it is a plain recording proxy: `counts` records what it
did, `bodies` the size of every request body it forwarded (what the service
wrote to S3, for write-amplification tests).

How it fails: a request the S3 server does not answer becomes a 502 from the
proxy (S3 clients retry it like any 5xx).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from yarl import URL

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
    }
)
_FAILURES = {
    "503": (503, "SlowDown", "Please reduce your request rate."),
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
}


@dataclass
class Faults:
    share: dict[str, float] = field(default_factory=dict)
    """Per S3 operation (`UploadPart`, `AbortMultipartUpload`), the share of calls that fail."""
    kinds: tuple[str, ...] = ("503", "500", "stall")
    always_fail: dict[str, frozenset[str]] = field(default_factory=dict)
    """Per word found in an object key, the operations that fail on every call for it."""
    spared_parts: int = 0
    stall_seconds: float = 2.0
    seed: int = 0


def operation(request: web.Request) -> str:
    """The S3 operation of a request, as far as these tests need to tell them apart."""
    query = request.rel_url.query
    if "uploadId" in query:
        if request.method == "PUT" and "partNumber" in query:
            return "UploadPart"
        if request.method == "DELETE":
            return "AbortMultipartUpload"
        if request.method == "POST":
            return "CompleteMultipartUpload"
        return "ListParts"
    if request.method == "POST" and "uploads" in query:
        return "CreateMultipartUpload"
    return f"{request.method} object"


@dataclass(frozen=True)
class Body:
    operation: str
    path: str
    """/bucket/key"""
    size: int
    """The bytes on the wire (with aws-chunked signing framing, when the client used it)."""
    decoded_size: int
    """The bytes of the object or part itself."""


def _decoded_length(request: web.Request, wire: int) -> int:
    """The payload size: `x-amz-decoded-content-length` under aws-chunked signing, else
    the body's length."""
    declared = request.headers.get("x-amz-decoded-content-length")
    return int(declared) if declared is not None else wire


class FaultyS3Proxy:
    def __init__(self, upstream: str, faults: Faults | None = None) -> None:
        self._upstream = upstream.rstrip("/")
        self._faults = faults or Faults()
        self._random = random.Random(self._faults.seed)
        self._client: aiohttp.ClientSession | None = None
        self.counts: Counter[str] = Counter()
        """`<operation>` per call seen, `<operation> <kind>` per fault injected."""
        self.bodies: list[Body] = []
        """Every request forwarded with a body, in order."""
        self._spared_stored: dict[str, set[int]] = {}
        """Per object path of an always-failing upload: its spared parts stored so far."""
        self._spared_change = asyncio.Condition()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        name = operation(request)
        self.counts[name] += 1
        part = int(request.rel_url.query.get("partNumber", 0))
        doomed = self._always_fails(name, request.path)
        spared = doomed and name == "UploadPart" and 0 < part <= self._faults.spared_parts
        fault = None if spared else "503" if doomed else self._pick(name)
        if fault is not None:
            self.counts[f"{name} {fault}"] += 1
        if fault == "stall":
            await asyncio.sleep(self._faults.stall_seconds)
        elif fault is not None:
            if doomed and name == "UploadPart":
                await self._spared_parts_stored(request.path)
            return _s3_error(fault, request.path)
        if body:
            self.bodies.append(
                Body(name, request.path, len(body), _decoded_length(request, len(body)))
            )
        answer = await self._forward(request, body)
        if spared and answer.status == 200:
            async with self._spared_change:
                self._spared_stored.setdefault(request.path, set()).add(part)
                self._spared_change.notify_all()
        return answer

    def _always_fails(self, name: str, path: str) -> bool:
        return any(
            word in path and name in operations
            for word, operations in self._faults.always_fail.items()
        )

    async def _spared_parts_stored(self, path: str) -> None:
        """Wait until the spared parts of `path` are stored, or at most 30 s (an upload that
        never sends them must still be answered)."""
        wanted = self._faults.spared_parts
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30), self._spared_change:
                await self._spared_change.wait_for(
                    lambda: len(self._spared_stored.get(path, ())) >= wanted
                )

    def _pick(self, name: str) -> str | None:
        if self._random.random() < self._faults.share.get(name, 0.0):
            return self._random.choice(self._faults.kinds)
        return None

    async def _forward(self, request: web.Request, body: bytes) -> web.StreamResponse:
        assert self._client is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        url = URL(self._upstream + request.raw_path, encoded=True)
        try:
            async with self._client.request(
                request.method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                auto_decompress=False,
                skip_auto_headers=("Content-Type", "Accept-Encoding", "User-Agent"),
            ) as answer:
                payload = await answer.read()
                kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
                return web.Response(status=answer.status, body=payload, headers=kept)
        except aiohttp.ClientError:
            return web.Response(status=502, text="the S3 server did not answer")

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """Serve on a free loopback port; yields the proxy's endpoint URL."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=120), auto_decompress=False
        ) as client:
            self._client = client
            await site.start()
            try:
                port = runner.addresses[0][1]
                yield f"http://127.0.0.1:{port}"
            finally:
                await runner.cleanup()
                self._client = None


def _s3_error(kind: str, path: str) -> web.Response:
    status, code, message = _FAILURES[kind]
    # Real S3 errors name the resource; a service must keep that out of its answers.
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message} ({path})</Message>"
        f"<Resource>{path}</Resource><RequestId>fault-injected</RequestId></Error>"
    )
    return web.Response(status=status, text=xml, content_type="application/xml")
