"""Plain tus requests for the integration tests: create an upload, HEAD it, PATCH it.

`Source` hands out the bytes of a generated file in order, a piece at a time, so a
test can send a large upload in pieces without holding it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import aiohttp

from tests.integration.harness import RunningIngest
from tests.media import MiB, fake_video_chunks

OFFSET_STREAM = "application/offset+octet-stream"


class Source:
    """The bytes of a generated file, taken in order a piece at a time, never held whole."""

    def __init__(self, size: int, seed: int) -> None:
        self._chunks: Iterator[bytes] = fake_video_chunks(size, seed=seed, chunk=MiB)
        self._pending = b""

    def take(self, size: int) -> bytes:
        while len(self._pending) < size:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            self._pending += chunk
        taken, self._pending = self._pending[:size], self._pending[size:]
        return taken

    def skip(self, size: int) -> None:
        self.take(size)


def tus_headers(ingest: RunningIngest, user: str, **headers: str) -> dict[str, str]:
    return {**ingest.auth(user), "Tus-Resumable": "1.0.0", **headers}


async def create_upload(
    http: aiohttp.ClientSession, ingest: RunningIngest, user: str, length: int, name: str
) -> str:
    metadata = f"filename {base64.b64encode(name.encode()).decode()}"
    headers = tus_headers(
        ingest, user, **{"Upload-Length": str(length), "Upload-Metadata": metadata}
    )
    async with http.post(f"{ingest.url}/v1/tus/", headers=headers) as response:
        assert response.status == 201, await response.text()
        assert response.headers["Tus-Resumable"] == "1.0.0"
        return response.headers["Location"]


async def head_offset(
    http: aiohttp.ClientSession, ingest: RunningIngest, user: str, path: str
) -> int:
    async with http.head(f"{ingest.url}{path}", headers=tus_headers(ingest, user)) as response:
        assert response.status == 200, response.status
        assert response.headers["Cache-Control"] == "no-store"
        return int(response.headers["Upload-Offset"])


async def patch_upload(
    http: aiohttp.ClientSession,
    ingest: RunningIngest,
    user: str,
    path: str,
    offset: int,
    data: bytes,
) -> aiohttp.ClientResponse:
    headers = tus_headers(
        ingest, user, **{"Upload-Offset": str(offset), "Content-Type": OFFSET_STREAM}
    )
    async with http.patch(f"{ingest.url}{path}", data=data, headers=headers) as response:
        await response.read()
        return response
