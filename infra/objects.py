"""Reading stored files and keeping small result documents, for processes beside the write path.

The consumers may not use the write path's adapters, yet need two things from
the bucket: a stored file copied to a local file (streamed, never held whole)
and small JSON documents read and overwritten whole. `ObjectSource` and
`Documents` are those two interfaces; this module holds them and their local
disk implementations (the directories `ingest dev` keeps: objects under
`<root>/<bucket>/<key>`, documents under `<root>/documents/<key>`, as the
write path's local adapters lay them out). `infra.s3_objects` implements
both on S3.

How it fails: a file or document key that does not exist raises ObjectMissing
from `download` (not retriable: it was deleted, retrying will not bring it
back); `Documents.read` returns None instead. A key that is no safe path
raises ObjectMissing too. Disk errors raise ServiceUnavailable (retriable: a
full disk may be freed). A download that fails leaves no destination file
behind.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Final, Protocol

import aiofiles
import aiofiles.os

from infra.errors import ServiceError, ServiceUnavailable

CHUNK_BYTES: Final = 1024 * 1024
"""Bytes copied at a time: one chunk in memory per download."""


class ObjectMissing(ServiceError):
    """The stored file (or the document) is not there."""

    error_code = "OBJECT_MISSING"


class ObjectSource(Protocol):
    async def download(self, bucket: str, key: str, destination: Path) -> int:
        """Copy the object to `destination` (created or truncated); the bytes copied."""
        ...


class Documents(Protocol):
    async def read(self, key: str) -> bytes | None:
        """The document's bytes, None when there is none."""
        ...

    async def write(self, key: str, data: bytes) -> None:
        """Store `data` as the document, replacing any; readers see the old or the new whole."""
        ...


def _inside(root: Path, key: str) -> Path:
    """`root/key`, refusing a key that would leave `root` or name no file (lexical check)."""
    segments = key.split("/")
    if not key or any(s in {"", ".", ".."} or "\x00" in s for s in segments):
        raise ObjectMissing(f"{key!r} is not a key that can be stored on local disk")
    return root.joinpath(*segments)


async def _remove_if_there(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        await aiofiles.os.remove(path)


class LocalObjects:
    """`ObjectSource` reading the local object store's directory (`ingest dev`)."""

    def __init__(self, root: Path) -> None:
        self._root = root

    async def download(self, bucket: str, key: str, destination: Path) -> int:
        source = _inside(self._root / bucket, key)
        copied = 0
        try:
            async with (
                aiofiles.open(source, "rb") as reader,
                aiofiles.open(destination, "wb") as writer,
            ):
                while chunk := await reader.read(CHUNK_BYTES):
                    await writer.write(chunk)
                    copied += len(chunk)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            await _remove_if_there(destination)
            raise ObjectMissing(f"no stored file {bucket}/{key}") from None
        except OSError as error:
            await _remove_if_there(destination)
            raise ServiceUnavailable(f"could not copy {bucket}/{key}: {error}") from error
        return copied


class LocalDocuments:
    """`Documents` under `<root>/documents/`, written through a scratch file and a rename."""

    def __init__(self, root: Path) -> None:
        self._documents = root / "documents"
        self._scratch = root / ".tmp"

    async def read(self, key: str) -> bytes | None:
        try:
            async with aiofiles.open(_inside(self._documents, key), "rb") as file:
                return await file.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as error:
            raise ServiceUnavailable(f"could not read document {key}: {error}") from error

    async def write(self, key: str, data: bytes) -> None:
        path = _inside(self._documents, key)
        scratch = self._scratch / f"{uuid.uuid4().hex}.doc"
        try:
            await aiofiles.os.makedirs(self._scratch, exist_ok=True)
            async with aiofiles.open(scratch, "xb") as file:
                await file.write(data)
            await aiofiles.os.makedirs(path.parent, exist_ok=True)
            await aiofiles.os.replace(scratch, path)
        except OSError as error:
            await _remove_if_there(scratch)
            raise ServiceUnavailable(f"could not write document {key}: {error}") from error
