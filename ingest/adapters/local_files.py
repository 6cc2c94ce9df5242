"""Keys turned into paths inside a root, and file writes that never leave half a file.

Shared by the local object store and the local document store. A key becomes
a path only when it cannot name anything outside the root (`key_segments`);
a file is written whole to a scratch file and renamed into place
(`write_atomically`), so a reader sees the old content or the new, never a mix.
Nothing is fsync'ed: what is written survives a crash of the process, not of
the machine. Every file system call runs off the event loop.

How it fails: an unsafe key (empty, absolute, with an empty, `.` or `..`
segment, a NUL, not UTF-8, over 1024 bytes) raises StorageError
`InvalidObjectName`; `write_atomically` raises the OSError of the failed call,
with its scratch file removed; the quiet removals only log what they could not
remove (a leftover, not data).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from pathlib import Path
from typing import Final

import aiofiles
import aiofiles.os

from ingest.errors import StorageError

log = logging.getLogger(__name__)

MAX_KEY_BYTES: Final = 1024


def key_segments(key: str) -> list[str]:
    """The path segments of an object or document key; StorageError when it has no safe path.

    Only a lexical check: no file system call, so it is safe on the event loop.
    """
    reason = _unsafe_key_reason(key)
    if reason is not None:
        raise StorageError(
            f"key {key!r} cannot be stored on local disk: {reason}",
            details={"key": key, "code": "InvalidObjectName", "status": 400},
        )
    return key.split("/")


def _unsafe_key_reason(key: str) -> str | None:
    if not key:
        return "it is empty"
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid UTF-8"  # S3 refuses it too; the file system could not name it
    if len(encoded) > MAX_KEY_BYTES:
        return f"it is over {MAX_KEY_BYTES} bytes"
    if "\x00" in key:
        return "it contains a NUL"
    if key.startswith("/"):
        return "it is absolute"
    # An empty segment would collapse into its neighbour ("a//b" is "a/b" on disk),
    # and "." or ".." would point somewhere else, possibly outside the root.
    if any(segment in ("", ".", "..") for segment in key.split("/")):
        return "it has an empty, '.' or '..' segment"
    return None


async def write_atomically(path: Path, data: bytes, *, scratch: Path) -> None:
    """Write `data` to a fresh file in `scratch`, then rename it to `path`.

    `scratch` must be on the same file system as `path` (the rename is then
    atomic); readers see the old content or the new, never a mix. The parent
    of `path` is created when missing. OSError on failure, with the scratch
    file removed.
    """
    temporary = scratch / f"{uuid.uuid4().hex}.tmp"
    try:
        async with aiofiles.open(temporary, "xb") as file:
            await file.write(data)
        await aiofiles.os.makedirs(path.parent, exist_ok=True)
        await aiofiles.os.replace(temporary, path)
    except BaseException:
        await remove_quietly(temporary)
        raise


async def remove_quietly(path: Path) -> None:
    """Remove a file that may not exist; a failure is only logged (it is a leftover, not data)."""
    try:
        await aiofiles.os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        log.warning("could not remove %s: %s", path, error)


async def remove_tree_quietly(path: Path) -> None:
    """Remove a directory and everything in it, in one worker thread; failures are logged."""
    try:
        await asyncio.to_thread(shutil.rmtree, path)
    except FileNotFoundError:
        pass
    except OSError as error:
        log.warning("could not remove %s: %s", path, error)
