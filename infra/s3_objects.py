"""`ObjectSource` and `Documents` (see `infra.objects`) on S3, over a shared aiobotocore client.

A download streams the object's body into the destination file one chunk at
a time through aiofiles; documents are single PUTs (with their SHA-256, which
S3 verifies) under the state prefix of the bucket layout.

How it fails: a missing object raises ObjectMissing (a missing document reads
as None); a failure that may pass (a connection error, a timeout, HTTP 5xx,
SlowDown and the like) raises ServiceUnavailable, retriable, so the consumer
retries with backoff; any other refusal (AccessDenied, a bucket that does not
exist) raises ServiceError, not retriable. A download that fails removes the
partial destination file.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from pathlib import Path
from typing import Any, Final

import aiofiles
import aiofiles.os
import aiohttp
from botocore.exceptions import BotoCoreError, ClientError

from infra.errors import ServiceError, ServiceUnavailable
from infra.layout import STATE_PREFIX
from infra.objects import CHUNK_BYTES, ObjectMissing

_MISSING: Final = frozenset({"NoSuchKey", "404", "NotFound"})
_PASSING: Final = frozenset(
    {"InternalError", "RequestTimeout", "ServiceUnavailable", "SlowDown", "Throttling"}
)


def _failure(what: str, error: BaseException) -> ServiceError:
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if code in _MISSING:
            return ObjectMissing(f"{what}: not found")
        reason = f"{what}: S3 answered {code} (HTTP {status})"
        if code in _PASSING or status >= 500:
            return ServiceUnavailable(reason)
        return ServiceError(reason)
    return ServiceUnavailable(f"{what}: {type(error).__name__}: {error}")


_CLIENT_FAILURES: Final = (BotoCoreError, ClientError, aiohttp.ClientError, OSError, TimeoutError)


class S3Objects:
    """`ObjectSource` over an S3 client the caller keeps open."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def download(self, bucket: str, key: str, destination: Path) -> int:
        copied = 0
        try:
            answer = await self._client.get_object(Bucket=bucket, Key=key)
            async with answer["Body"] as body, aiofiles.open(destination, "wb") as file:
                while chunk := await body.read(CHUNK_BYTES):
                    await file.write(chunk)
                    copied += len(chunk)
        except _CLIENT_FAILURES as error:
            with contextlib.suppress(FileNotFoundError):
                await aiofiles.os.remove(destination)
            raise _failure(f"reading s3://{bucket}/{key}", error) from error
        return copied


class S3Documents:
    """`Documents` as objects under the bucket's state prefix."""

    def __init__(self, client: Any, bucket: str, *, prefix: str = STATE_PREFIX) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix

    async def read(self, key: str) -> bytes | None:
        try:
            answer = await self._client.get_object(Bucket=self._bucket, Key=self._prefix + key)
            async with answer["Body"] as body:
                data: bytes = await body.read()
                return data
        except _CLIENT_FAILURES as error:
            failure = _failure(f"reading document {key}", error)
            if isinstance(failure, ObjectMissing):
                return None
            raise failure from error

    async def write(self, key: str, data: bytes) -> None:
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        try:
            await self._client.put_object(
                Bucket=self._bucket,
                Key=self._prefix + key,
                Body=data,
                ContentType="application/json",
                ChecksumSHA256=digest,
            )
        except _CLIENT_FAILURES as error:
            raise _failure(f"writing document {key}", error) from error
