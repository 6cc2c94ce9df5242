"""Small JSON documents (upload sessions) in S3, updated by compare-and-swap.

A document is one object under a key prefix (`_sessions/` by default); its
version is the object's ETag. `create` writes with `If-None-Match: *` and
`replace` with `If-Match: <etag>`, so S3 itself decides which of two instances
wins: the loser gets VersionConflict. Every body carries its SHA-256, which S3
verifies.

How it fails: a refused precondition (412 PreconditionFailed, 409
ConditionalRequestConflict, or a replace of a document that no longer exists)
raises VersionConflict; any other failure raises StorageError (see
`s3_calls.storage_error`). Reading a missing document returns None.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Self

from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError

from infra.s3 import S3Endpoint, open_s3_client
from ingest.adapters.s3_calls import S3CallObserver, S3Calls, error_code
from ingest.errors import VersionConflict
from ingest.ports import Versioned

DEFAULT_PREFIX = "_sessions/"

# What S3 answers when a conditional write loses: the condition no longer holds
# (412), or another conditional write to the key is in progress (409).
_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})


class S3DocumentStore:
    """`DocumentStore` over a shared aiobotocore S3 client that the caller keeps open."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        observer: S3CallObserver | None = None,
        page_size: int = 1000,
    ) -> None:
        self._client = client
        self._calls = S3Calls(bucket, observer)
        self._prefix = prefix
        self._page_size = page_size

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        endpoint: S3Endpoint,
        bucket: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        observer: S3CallObserver | None = None,
        config: AioConfig | None = None,
    ) -> AsyncIterator[Self]:
        """A store with its own client (see `infra.s3.s3_client_config`), closed on exit."""
        async with open_s3_client(endpoint, config=config) as client:
            yield cls(client, bucket, prefix=prefix, observer=observer)

    @property
    def prefix(self) -> str:
        return self._prefix

    async def create(self, key: str, data: bytes) -> str:
        return await self._put(key, data, "create_document", IfNoneMatch="*")

    async def replace(self, key: str, data: bytes, *, version: str) -> str:
        return await self._put(key, data, "replace_document", IfMatch=version)

    async def read(self, key: str) -> Versioned | None:
        object_key = self._object_key(key)
        async with self._calls.call("read_document", object_key):
            try:
                response = await self._client.get_object(Bucket=self._calls.bucket, Key=object_key)
            except ClientError as error:
                if error_code(error) == "NoSuchKey":
                    return None
                raise
            async with response["Body"] as body:
                data = await body.read()
        return Versioned(data=data, version=response["ETag"])

    async def list_keys(self, prefix: str) -> list[str]:
        """Keys (without the store's prefix) of the documents whose key starts with `prefix`."""
        full_prefix = self._prefix + prefix
        keys: list[str] = []
        async with self._calls.call("list_documents", full_prefix):
            paginator = self._client.get_paginator("list_objects_v2")
            pages = paginator.paginate(
                Bucket=self._calls.bucket,
                Prefix=full_prefix,
                PaginationConfig={"PageSize": self._page_size},
            )
            async for page in pages:
                keys.extend(item["Key"][len(self._prefix) :] for item in page.get("Contents", []))
        return keys

    async def delete(self, key: str) -> None:
        object_key = self._object_key(key)
        async with self._calls.call("delete_document", object_key):
            # S3 answers 204 for a key that does not exist, so deleting twice is harmless.
            await self._client.delete_object(Bucket=self._calls.bucket, Key=object_key)

    async def _put(self, key: str, data: bytes, operation: str, **condition: str) -> str:
        object_key = self._object_key(key)
        async with self._calls.call(operation, object_key):
            try:
                response = await self._client.put_object(
                    Bucket=self._calls.bucket,
                    Key=object_key,
                    Body=data,
                    ContentType="application/json",
                    ChecksumSHA256=base64.b64encode(hashlib.sha256(data).digest()).decode(),
                    **condition,
                )
            except ClientError as error:
                code = error_code(error)
                # A replace of a document deleted meanwhile loses like any other.
                if code in _CONFLICT_CODES or ("IfMatch" in condition and code == "NoSuchKey"):
                    raise VersionConflict(
                        f"document {key!r} was changed by another writer",
                        details={"key": key, "code": code},
                    ) from error
                raise
        etag: str = response["ETag"]
        return etag

    def _object_key(self, key: str) -> str:
        if not key:
            raise ValueError("a document key must not be empty")
        return self._prefix + key
