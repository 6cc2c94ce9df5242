"""`DocumentStore` in memory, compare-and-swap like the S3 one: `MemoryDocumentStore`."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from ingest.errors import VersionConflict
from ingest.ports import Versioned

if TYPE_CHECKING:
    from ingest.ports import DocumentStore


class MemoryDocumentStore:
    """Documents with compare-and-swap versions, like the S3-backed store (conditional writes).

    `fail_with` makes every call raise (e.g. ServiceUnavailable); `writes` counts
    successful create/replace calls.
    """

    def __init__(self) -> None:
        self._documents: dict[str, Versioned] = {}
        self._versions = itertools.count(1)
        self.fail_with: Exception | None = None
        self.writes = 0

    async def create(self, key: str, data: bytes) -> str:
        self._maybe_fail()
        if key in self._documents:
            raise VersionConflict(
                f"document {key!r} already exists",
                details={"key": key, "code": "PreconditionFailed"},
            )
        return self._put(key, data)

    async def read(self, key: str) -> Versioned | None:
        self._maybe_fail()
        return self._documents.get(key)

    async def replace(self, key: str, data: bytes, *, version: str) -> str:
        self._maybe_fail()
        current = self._documents.get(key)
        if current is None or current.version != version:
            raise VersionConflict(
                f"document {key!r} changed since version {version}",
                details={
                    "key": key,
                    "code": "NoSuchKey" if current is None else "PreconditionFailed",
                },
            )
        return self._put(key, data)

    async def list_keys(self, prefix: str) -> list[str]:
        self._maybe_fail()
        return sorted(k for k in self._documents if k.startswith(prefix))

    async def delete(self, key: str) -> None:
        self._maybe_fail()
        self._documents.pop(key, None)

    def snapshot(self) -> dict[str, bytes]:
        """Every document's current data, by key."""
        return {k: v.data for k, v in self._documents.items()}

    def _put(self, key: str, data: bytes) -> str:
        version = f"v{next(self._versions)}"
        self._documents[key] = Versioned(data=bytes(data), version=version)
        self.writes += 1
        return version

    def _maybe_fail(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with


if TYPE_CHECKING:
    # mypy proves the fake still satisfies its port when the port changes.
    _documents: DocumentStore = MemoryDocumentStore()
