"""Upload local files to an ingest server: one-shot streams or tus resumable uploads.

Both read the file in chunks (never whole) and report progress through a
callback. A one-shot upload given the file's SHA-256 sends it at initiation, so
a file the user already stored is answered with the earlier result unsent.
Failures raise `UploadFailed`, whose `retriable` flag drives the retry loop: a
one-shot upload starts over with a new session, a resumable one asks the server
for its offset and continues from there.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from cli.client.errors import UploadFailed, connection_failure, from_response
from cli.client.files import file_chunks
from cli.client.resume import ResumeStore, fingerprint

log = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
FINISH_TIMEOUT = 300.0
Progress = Callable[[int], None]
"""Called with the number of bytes the server now has (absolute, may go back on a restart)."""


@dataclass(frozen=True)
class ClientConfig:
    server: str
    token: str
    retries: int = 5
    backoff_seconds: float = 1.0
    chunk: int = 1024 * 1024
    patch_size: int | None = None
    """Largest resumable request; None sends the rest of the file in one (the server keeps
    whatever arrives, so smaller requests only matter behind proxies that cap bodies)."""


class Uploader:
    def __init__(
        self, http: aiohttp.ClientSession, config: ClientConfig, resume: ResumeStore
    ) -> None:
        self._http = http
        self._config = config
        self._resume = resume
        self._auth = {"Authorization": f"Bearer {config.token}"}

    async def upload(
        self, path: Path, *, resumable: bool, progress: Progress, file_hash: str | None = None
    ) -> dict[str, Any]:
        """Upload one file, retrying transient failures with exponential backoff and jitter.

        With its `file_hash` (SHA-256), a file the user already stored is not sent:
        the server answers with the earlier result.
        """
        attempt = 0
        while True:
            try:
                if resumable:
                    return await self._upload_tus(path, progress)
                return await self._upload_once(path, progress, file_hash)
            except (aiohttp.ClientError, TimeoutError) as error:
                failure = UploadFailed(
                    connection_failure(self._config.server, error), retriable=True
                )
            except UploadFailed as error:
                failure = error
            attempt += 1
            if not failure.retriable or attempt > self._config.retries:
                raise failure
            delay = self._config.backoff_seconds * 2 ** (attempt - 1) * (0.5 + random.random())
            log.info("%s: %s; retrying in %.1fs", path.name, failure, delay)
            await asyncio.sleep(delay)

    async def _upload_once(
        self, path: Path, progress: Progress, file_hash: str | None
    ) -> dict[str, Any]:
        size = (await asyncio.to_thread(path.stat)).st_size
        created: dict[str, Any] = {"filename": path.name, "expected_file_size": size}
        if file_hash is not None:
            created["file_hash"] = file_hash
        session = await self._json("POST", "/v1/uploads", json=created, expect=(201, 200))
        if session.get("status") == "completed" and isinstance(session.get("result"), dict):
            # Stored before: the earlier result is this file's, and no byte needs sending.
            progress(size)
            return {**session["result"], "resumed_from": 0, "bytes_sent": 0}
        sent = 0

        def count(n: int) -> None:
            nonlocal sent
            sent += n
            progress(sent)

        progress(0)
        result = await self._json(
            "PUT",
            session["upload_url"],
            data=file_chunks(path, chunk=self._config.chunk, on_chunk=count),
            headers={"Content-Length": str(size), "Content-Type": _content_type(path)},
            expect=201,
            expect100=True,
        )
        return {**result, "resumed_from": 0, "bytes_sent": sent}

    async def _upload_tus(self, path: Path, progress: Progress) -> dict[str, Any]:
        size = (await asyncio.to_thread(path.stat)).st_size
        key = await asyncio.to_thread(fingerprint, self._config.server, path)
        location = await self._resume.get(key)
        offset = await self._server_offset(location) if location else None
        if location is None or offset is None:
            location = await self._create_tus(path, size)
            await self._resume.put(key, location)
            offset = 0
        progress(offset)
        resumed_from = offset
        sent = 0

        def count(done: int) -> None:
            nonlocal sent
            sent = max(sent, done - resumed_from)
            progress(done)

        try:
            while offset < size:
                offset = await self._patch(path, location, offset, size, count)
            upload_id = location.rstrip("/").rsplit("/", 1)[-1]
            result = await self._finished_session(upload_id)
        except UploadFailed as failure:
            if failure.final_for_the_upload:
                # Refused for good (not a video, too large, gone...): the next run starts over
                # instead of asking about this upload again.
                await self._resume.forget(key)
            raise
        await self._resume.forget(key)
        if result.get("status") != "completed" or not result.get("result"):
            raise UploadFailed(
                f"the server has every byte but the upload is {result.get('status')}: "
                f"{result.get('message')}",
                retriable=False,
            )
        return {**result["result"], "resumed_from": resumed_from, "bytes_sent": sent}

    async def _finished_session(self, upload_id: str) -> dict[str, Any]:
        """The session once the server has finished it (hashing the stored file takes a moment)."""
        async with asyncio.timeout(FINISH_TIMEOUT):
            while True:
                session = await self._json("GET", f"/v1/uploads/{upload_id}", expect=200)
                if session.get("status") not in ("active", "uploading"):
                    return session
                await asyncio.sleep(0.5)

    async def _create_tus(self, path: Path, size: int) -> str:
        metadata = ",".join(
            f"{name} {base64.b64encode(value.encode()).decode()}"
            for name, value in (("filename", path.name), ("filetype", _content_type(path)))
        )
        async with self._http.post(
            self._url("/v1/tus/"),
            headers={
                **self._auth,
                "Tus-Resumable": TUS_VERSION,
                "Upload-Length": str(size),
                "Upload-Metadata": metadata,
            },
        ) as response:
            if response.status != 201 or "Location" not in response.headers:
                raise from_response(response.status, await _body(response))
            return response.headers["Location"]

    async def _server_offset(self, location: str) -> int | None:
        """The offset the server has for `location`, or None when it no longer knows it."""
        async with self._http.head(
            self._url(location), headers={**self._auth, "Tus-Resumable": TUS_VERSION}
        ) as response:
            if response.status in (403, 404, 410):
                return None
            if response.status != 200:
                raise from_response(response.status, None)
            return int(response.headers["Upload-Offset"])

    async def _patch(
        self, path: Path, location: str, offset: int, size: int, progress: Progress
    ) -> int:
        sent = offset

        def count(n: int) -> None:
            nonlocal sent
            sent += n
            progress(sent)

        length = size - offset
        if self._config.patch_size is not None:
            length = min(length, self._config.patch_size)
        try:
            async with self._http.patch(
                self._url(location),
                data=file_chunks(
                    path, start=offset, length=length, chunk=self._config.chunk, on_chunk=count
                ),
                headers={
                    **self._auth,
                    "Tus-Resumable": TUS_VERSION,
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                    "Content-Length": str(length),
                },
            ) as response:
                if response.status == 204:
                    return int(response.headers["Upload-Offset"])
                if response.status == 409:  # our offset is stale: ask where the server is
                    current = await self._server_offset(location)
                    if current is not None:
                        return current
                raise from_response(response.status, await _body(response))
        except (aiohttp.ClientError, TimeoutError):
            # The connection broke mid-PATCH: resume from what the server kept.
            current = await self._server_offset(location)
            if current is None:
                raise
            progress(current)
            if current <= offset:
                raise
            return current

    async def _json(
        self, method: str, path: str, *, expect: int | tuple[int, ...], **kwargs: Any
    ) -> dict[str, Any]:
        headers = {**self._auth, **kwargs.pop("headers", {})}
        expected = expect if isinstance(expect, tuple) else (expect,)
        async with self._http.request(
            method, self._url(path), headers=headers, **kwargs
        ) as response:
            body = await _body(response)
            if response.status not in expected or not isinstance(body, dict):
                raise from_response(response.status, body)
            return body

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self._config.server.rstrip('/')}{path}"


async def _body(response: aiohttp.ClientResponse) -> Any:
    try:
        return await response.json(content_type=None)
    except ValueError:
        return (await response.text())[:500]


def _content_type(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    return {
        "mp4": "video/mp4",
        "mov": "video/quicktime",
        "avi": "video/x-msvideo",
        "mkv": "video/x-matroska",
        "webm": "video/webm",
    }.get(suffix, "application/octet-stream")
