"""Small JSON documents (upload sessions) on local disk, updated by compare-and-swap.

The `DocumentStore` of `ingest dev` and of tests. A document is one file,
`root/documents/<key>` (key segments are directories), holding exactly the
bytes stored, so a developer can read it. Its version is the quoted MD5 of
those bytes: the ETag S3 gives a single PUT, so both stores hand out the same
versions, with the same consequence: writing back identical bytes keeps the
version (a compare-and-swap on the content, which is what a version guards).

Single process by design: `create` and `replace` check and write under an
asyncio.Lock per key, so concurrent writers in this process get exactly one
winner. Two processes sharing a root are not kept apart; `ingest dev` is one
process. Every write goes to a scratch file in `root/.tmp/` and is renamed into
place, so readers (who take no lock) see the old or the new document, never a
mix. Nothing is fsync'ed: it survives a crash of the process, not of the
machine. Every file operation runs off the event loop.

How it fails: `create` of an existing key and `replace` with a stale version,
or of a document that does not exist, raise VersionConflict. An empty key
raises ValueError (as in the S3 store); a key that cannot be a path inside the
root raises StorageError `InvalidObjectName`; a disk error raises StorageError
(`details` shaped like the S3 adapter's). Reading a missing document returns
None. Unlike S3, a key cannot be both a document and a "directory" of others
(`a` and `a/b`): the second one created fails with StorageError.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import weakref
from pathlib import Path
from typing import Final

import aiofiles
import aiofiles.os

from ingest.adapters.local_failures import disk_error
from ingest.adapters.local_files import key_segments, write_atomically
from ingest.errors import StorageError, VersionConflict
from ingest.ports import Versioned

_DOCUMENTS_DIR: Final = "documents"
_SCRATCH_DIR: Final = ".tmp"


def version_of(data: bytes) -> str:
    """The version of a document: its quoted MD5, as S3's ETag of a single PUT."""
    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


class LocalDocumentStore:
    """`DocumentStore` in a directory, for one process."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._documents = root / _DOCUMENTS_DIR
        self._scratch = root / _SCRATCH_DIR
        # A lock lives only while someone holds or waits for it, so keys never pile up.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @property
    def root(self) -> Path:
        return self._root

    async def create(self, key: str, data: bytes) -> str:
        path = self._path(key)
        async with self._lock(key):
            if await self._load(path, key) is not None:
                raise VersionConflict(
                    f"document {key!r} already exists",
                    details={"key": key, "code": "PreconditionFailed"},
                )
            await self._write(path, key, data, "create_document")
        return version_of(data)

    async def replace(self, key: str, data: bytes, *, version: str) -> str:
        path = self._path(key)
        async with self._lock(key):
            current = await self._load(path, key)
            if current is None or version_of(current) != version:
                raise VersionConflict(
                    f"document {key!r} was changed by another writer",
                    details={
                        "key": key,
                        "code": "NoSuchKey" if current is None else "PreconditionFailed",
                    },
                )
            await self._write(path, key, data, "replace_document")
        return version_of(data)

    async def read(self, key: str) -> Versioned | None:
        data = await self._load(self._path(key), key)
        if data is None:
            return None
        return Versioned(data=data, version=version_of(data))

    async def list_keys(self, prefix: str) -> list[str]:
        """Keys of the documents whose key starts with `prefix`, sorted like S3 lists them."""
        # Walk only below the deepest directory the prefix names in full.
        directory, _, _ = prefix.rpartition("/")
        if directory:
            try:
                start = self._documents.joinpath(*key_segments(directory))
            except StorageError:
                return []  # no stored key can start with it
        else:
            start = self._documents
        # One worker thread for the whole walk rather than one hop per directory.
        keys = await asyncio.to_thread(_walk, start, self._documents)
        return sorted(key for key in keys if key.startswith(prefix))

    async def delete(self, key: str) -> None:
        path = self._path(key)
        async with self._lock(key):
            try:
                await aiofiles.os.remove(path)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return  # none to delete, as S3 answers
            except OSError as error:
                raise disk_error("delete_document", None, key, error) from error

    def _path(self, key: str) -> Path:
        if not key:
            raise ValueError("a document key must not be empty")
        return self._documents.joinpath(*key_segments(key))

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    async def _load(self, path: Path, key: str) -> bytes | None:
        try:
            async with aiofiles.open(path, "rb") as file:
                return await file.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            # A "directory" of other documents is no document, as in S3.
            return None
        except OSError as error:
            raise disk_error("read_document", None, key, error) from error

    async def _write(self, path: Path, key: str, data: bytes, operation: str) -> None:
        try:
            await aiofiles.os.makedirs(self._scratch, exist_ok=True)
            await write_atomically(path, data, scratch=self._scratch)
        except OSError as error:
            raise disk_error(operation, None, key, error) from error


def _walk(start: Path, base: Path) -> list[str]:
    """Keys of every document below `start` (runs in a worker thread)."""
    keys: list[str] = []
    for directory, _, files in os.walk(start):
        relative = Path(directory).relative_to(base).parts
        keys.extend("/".join((*relative, name)) for name in files)
    return keys
