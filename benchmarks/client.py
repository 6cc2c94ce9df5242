"""The benchmark's HTTP client of `ingest serve`: users, sessions and streamed uploads.

Uploads are spread over many users (one token each) so no per-user limit
shapes a benchmark. `upload` never raises for an HTTP error or a broken
connection: it returns an `UploadOutcome` whose `error` says what went wrong,
so a benchmark of 1,000 uploads counts its failures instead of stopping at the
first (`try_create_sessions` does the same for sessions); `create_sessions`
raises RuntimeError, for benchmarks that measure nothing without every session.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from ingest.auth import issue_token

UPLOADS_PER_USER = 50
"""Well under the default per-user upload quota (100 per period)."""


class Users:
    """`count` benchmark users with a token each; upload i belongs to user i % count."""

    def __init__(self, secret: str, count: int, *, prefix: str | None = None) -> None:
        prefix = prefix or f"bench-{uuid.uuid4().hex[:6]}"
        self._tokens = [
            issue_token(secret, f"{prefix}-{n}", ttl_seconds=86_400) for n in range(max(1, count))
        ]

    @classmethod
    def for_uploads(cls, secret: str, uploads: int) -> Users:
        return cls(secret, -(-uploads // UPLOADS_PER_USER))

    def auth(self, upload: int) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._tokens[upload % len(self._tokens)]}"}


def http_session(timeout: float | None = None) -> aiohttp.ClientSession:
    """A client without connection limits (the benchmark decides the concurrency)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


async def create_session(
    http: aiohttp.ClientSession, url: str, auth: dict[str, str], size: int
) -> str:
    """A new upload session for a `size`-byte mp4; its upload URL (absolute)."""
    async with http.post(
        f"{url}/v1/uploads",
        json={"filename": "bench.mp4", "expected_file_size": size},
        headers=auth,
    ) as response:
        body = await response.json()
        if response.status != 201:
            raise RuntimeError(f"creating a session failed: {response.status} {body}")
        return f"{url}{body['upload_url']}"


async def create_sessions(
    http: aiohttp.ClientSession,
    url: str,
    users: Users,
    sizes: Sequence[int],
    *,
    concurrency: int = 32,
) -> list[str]:
    """One session per entry of `sizes` (upload i for user i), created `concurrency` at a time.

    Raises RuntimeError when any cannot be created.
    """
    created = await try_create_sessions(http, url, users, sizes, concurrency=concurrency)
    failed = [c for c in created if isinstance(c, Exception)]
    if failed:
        raise RuntimeError(f"{len(failed)} sessions could not be created: {failed[0]}")
    return [c for c in created if isinstance(c, str)]


async def try_create_sessions(
    http: aiohttp.ClientSession,
    url: str,
    users: Users,
    sizes: Sequence[int],
    *,
    concurrency: int = 32,
) -> list[str | Exception]:
    """Like `create_sessions`, with the error in place of each session that failed."""
    slots = asyncio.Semaphore(concurrency)

    async def one(index: int, size: int) -> str | Exception:
        async with slots:
            try:
                return await create_session(http, url, users.auth(index), size)
            except (RuntimeError, aiohttp.ClientError, TimeoutError, ValueError) as error:
                return error

    return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(sizes))))


@dataclass(frozen=True)
class UploadOutcome:
    size: int
    started: float
    """time.monotonic() when the request started."""
    seconds: float
    status: int | None
    error: str | None
    result: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def ended(self) -> float:
        return self.started + self.seconds


async def upload(
    http: aiohttp.ClientSession,
    upload_url: str,
    auth: dict[str, str],
    body: AsyncIterable[memoryview],
    size: int,
) -> UploadOutcome:
    """PUT `body` (exactly `size` bytes) to a session's upload URL."""
    headers = {**auth, "Content-Length": str(size), "Content-Type": "video/mp4"}
    started = time.monotonic()
    status: int | None = None
    try:
        async with http.put(upload_url, data=body, headers=headers) as response:
            status = response.status
            answer = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        kind = f"{type(error).__name__}: {error}"[:160]
        return UploadOutcome(size, started, time.monotonic() - started, status, kind, None)
    seconds = time.monotonic() - started
    if status != 201:
        code = answer.get("error_code") if isinstance(answer, dict) else None
        return UploadOutcome(size, started, seconds, status, f"HTTP {status} {code}", None)
    return UploadOutcome(size, started, seconds, status, None, answer)


TusBody = bytes | AsyncIterable[memoryview]


async def tus_create(
    http: aiohttp.ClientSession, endpoint: str, size: int, headers: dict[str, str]
) -> str:
    """A new tus upload of `size` bytes named bench.mp4; its URL (absolute)."""
    metadata = "filename " + base64.b64encode(b"bench.mp4").decode()
    creation = {"Upload-Length": str(size), "Upload-Metadata": metadata}
    async with http.post(
        endpoint, headers={"Tus-Resumable": "1.0.0", **headers, **creation}
    ) as created:
        if created.status != 201:
            raise RuntimeError(
                f"tus creation at {endpoint}: {created.status} {await created.text()}"
            )
        return str(created.url.join(URL(created.headers["Location"])))


async def tus_patch(
    http: aiohttp.ClientSession,
    url: str,
    offset: int,
    data: TusBody,
    end: int,
    headers: dict[str, str],
    *,
    expect: bool = False,
) -> None:
    """PATCH `data` at `offset` (with `Expect: 100-continue` when `expect`); RuntimeError
    unless the upload is then at `end`."""
    patch = {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
    async with http.patch(
        url, data=data, headers={"Tus-Resumable": "1.0.0", **headers, **patch}, expect100=expect
    ) as patched:
        if patched.status != 204 or patched.headers.get("Upload-Offset") != str(end):
            raise RuntimeError(f"tus PATCH to {url}: {patched.status} {await patched.text()}")


async def tus_upload(
    http: aiohttp.ClientSession, endpoint: str, size: int, body: TusBody, headers: dict[str, str]
) -> str:
    """Create a tus upload and send the whole file in one PATCH; its URL."""
    url = await tus_create(http, endpoint, size, headers)
    await tus_patch(http, url, 0, body, size, headers)
    return url


async def stored_key(
    http: aiohttp.ClientSession, url: str, upload_id: str, auth: dict[str, str]
) -> str:
    """The object key of a completed upload, from its status."""
    async with http.get(f"{url}/v1/uploads/{upload_id}", headers=auth) as response:
        body = await response.json()
    result = body.get("result") or {}
    if body.get("status") != "completed" or "s3_key" not in result:
        raise RuntimeError(f"upload {upload_id} did not complete: {body}")
    return str(result["s3_key"])


def error_counts(outcomes: Sequence[UploadOutcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        if outcome.error is not None:
            counts[outcome.error] = counts.get(outcome.error, 0) + 1
    return counts
