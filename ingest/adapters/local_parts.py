"""The files of one local multipart upload: its manifest, and its parts with their digests.

An upload is a directory named by its id (32 hex digits, the only names ever
made into paths):

    manifest.json   key, bucket, content type, metadata, created (`UploadManifest`)
    <n>             part n, exactly the bytes uploaded
    <n>.json        part n's ETag and CRC32C, or SHA-256 (`PartDigests`), trusted only
                    for its inode
    *.tmp           a part or the object being written

A part is written to its own scratch files and renamed into place, the bytes
before their digests: two uploads of one part number race and the last rename
wins, and digests that end up beside other bytes (a race, a crash) no longer
match their inode, so those bytes are hashed again instead of trusted. Digests
are S3's: a part's ETag is its quoted MD5. Hashing runs in a worker thread
(hashlib releases the GIL), file calls through aiofiles.

How it fails: the file functions raise the OSError of the failed call
(FileNotFoundError when the upload directory is gone), with their scratch
files removed; an unreadable manifest or digests file is logged and read as
missing (no upload; digests to compute again).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

import aiofiles
import aiofiles.os
import msgspec

from infra.checksums import Crc32c, crc32c_b64, sha256_b64
from ingest.adapters.local_files import remove_quietly
from ingest.ports import STARTED_PART_CHECKSUM, PartChecksum, StoredPart

if TYPE_CHECKING:
    from _hashlib import HASH

log = logging.getLogger(__name__)

CHUNK_SIZE: Final = 1024 * 1024
"""Bytes read or written at once when assembling or reading an object: the memory bound."""
MANIFEST: Final = "manifest.json"
UPLOAD_ID: Final = re.compile(r"[0-9a-f]{32}")
"""The ids this store issues; any other id names no upload and never becomes a path."""


class UploadManifest(msgspec.Struct, frozen=True, kw_only=True):
    """What `start_multipart` records of an upload, in `<upload_id>/manifest.json`."""

    key: str
    bucket: str
    content_type: str | None
    metadata: dict[str, str]
    created: datetime
    checksums: bool = True
    """Parts carry a checksum that `complete` checks; False for parts copied from objects."""
    part_checksum: PartChecksum = STARTED_PART_CHECKSUM
    """The checksum parts carry: SHA256 only for an upload opened as earlier versions did."""


class PartDigests(msgspec.Struct, frozen=True, kw_only=True):
    """Beside part n as `n.json`, so listing parts needs no hashing; trusted only for its inode."""

    etag: str
    crc32c_b64: str
    size: int
    inode: int
    mtime_ns: int
    sha256_b64: str = ""
    """Set (and `crc32c_b64` empty) for a part of an upload whose parts carry a SHA-256."""


_manifest_decoder: Final = msgspec.json.Decoder(UploadManifest)
_digests_decoder: Final = msgspec.json.Decoder(PartDigests)


def quoted_md5(digest: bytes) -> str:
    return f'"{digest.hex()}"'


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def part_digests(data: bytes) -> tuple[str, str]:
    """(base64 CRC32C, quoted MD5 ETag) of a part; both release the GIL, so a thread helps."""
    return crc32c_b64(data), quoted_md5(hashlib.md5(data, usedforsecurity=False).digest())


def sha256_part_digests(data: bytes) -> tuple[str, str, str]:
    """(base64 CRC32C, base64 SHA-256, quoted MD5 ETag) of a part of an upload whose parts
    carry a SHA-256: the CRC32C it was sent with is checked, the SHA-256 kept."""
    crc, etag = part_digests(data)
    return crc, sha256_b64(data), etag


def object_digests(data: bytes) -> tuple[str, str]:
    """(base64 SHA-256, quoted MD5 ETag) of a whole object stored by one PUT."""
    return sha256_b64(data), quoted_md5(hashlib.md5(data, usedforsecurity=False).digest())


def update_all(hashes: tuple[HASH, HASH | Crc32c], chunk: bytes) -> None:
    for digest in hashes:
        digest.update(chunk)


async def read_manifest(directory: Path) -> UploadManifest | None:
    """The manifest of the upload in `directory`, or None when it is not an open upload."""
    try:
        async with aiofiles.open(directory / MANIFEST, "rb") as file:
            return _manifest_decoder.decode(await file.read())
    except FileNotFoundError:
        # Being created, or discarded meanwhile: not an open upload.
        return None
    except (OSError, msgspec.DecodeError) as error:
        log.warning("skipping the unreadable multipart upload %s: %s", directory.name, error)
        return None


async def write_part(
    directory: Path, number: int, data: bytes, *, crc32c_b64: str, etag: str, sha256_b64: str = ""
) -> None:
    """Store part `number` with its digests; OSError (FileNotFoundError: no directory) if not."""
    # Own scratch names: two uploads of one part number race, and the last rename wins.
    scratch = f"{number}.{uuid.uuid4().hex}"
    temporary = directory / f"{scratch}.tmp"
    try:
        async with aiofiles.open(temporary, "xb") as file:
            await file.write(data)
    except BaseException:
        await remove_quietly(temporary)
        raise
    await _place(
        directory, number, temporary, etag=etag, crc32c_b64=crc32c_b64, sha256_b64=sha256_b64
    )


async def copy_part(
    directory: Path, number: int, source: Path, start: int, end: int
) -> tuple[str, str]:
    """Store bytes [start, end) of the file `source` as part `number`, in chunks; its
    (base64 CRC32C, quoted MD5 ETag). OSError as `write_part`; FileNotFoundError also when
    `source` is gone."""
    temporary = directory / f"{number}.{uuid.uuid4().hex}.tmp"
    md5, crc = hashlib.md5(usedforsecurity=False), Crc32c()
    try:
        async with aiofiles.open(source, "rb") as chunks, aiofiles.open(temporary, "xb") as out:
            await chunks.seek(start)
            left = end - start
            while left > 0 and (chunk := await chunks.read(min(CHUNK_SIZE, left))):
                await asyncio.to_thread(update_all, (md5, crc), chunk)
                await out.write(chunk)
                left -= len(chunk)
    except BaseException:
        await remove_quietly(temporary)
        raise
    crc32c_b64, etag = crc.b64(), quoted_md5(md5.digest())
    await _place(directory, number, temporary, etag=etag, crc32c_b64=crc32c_b64)
    return crc32c_b64, etag


async def _place(
    directory: Path,
    number: int,
    temporary: Path,
    *,
    etag: str,
    crc32c_b64: str,
    sha256_b64: str = "",
) -> None:
    """Rename the written `temporary` into place as part `number`, with its digests."""
    temporary_digests = temporary.with_suffix(".json.tmp")
    try:
        written = await aiofiles.os.stat(temporary)
        digests = PartDigests(
            etag=etag,
            crc32c_b64=crc32c_b64,
            size=written.st_size,
            inode=written.st_ino,
            mtime_ns=written.st_mtime_ns,
            sha256_b64=sha256_b64,
        )
        async with aiofiles.open(temporary_digests, "xb") as file:
            await file.write(msgspec.json.encode(digests))
        # The part first: digests that end up beside another upload's bytes of this
        # part number (a race, a crash) no longer match its inode and are not trusted.
        await aiofiles.os.replace(temporary, directory / str(number))
        await aiofiles.os.replace(temporary_digests, directory / f"{number}.json")
    except BaseException:
        await remove_quietly(temporary)
        await remove_quietly(temporary_digests)
        raise


async def part_numbers(directory: Path) -> list[int]:
    """The numbers of the parts stored in `directory`, ascending; OSError if unreadable."""
    names = await aiofiles.os.listdir(directory)
    return sorted(int(name) for name in names if name.isdigit())


async def read_part(directory: Path, number: int, part_checksum: PartChecksum) -> StoredPart | None:
    """Part `number` as stored, with the checksum the upload's parts carry, or None when it
    is not (any more); OSError if unreadable."""
    path = directory / str(number)
    try:
        found = await aiofiles.os.stat(path)
    except FileNotFoundError:
        return None  # discarded meanwhile
    digests = await _read_digests(directory, number)
    if digests is None or (digests.inode, digests.mtime_ns, digests.size) != (
        found.st_ino,
        found.st_mtime_ns,
        found.st_size,
    ):
        # No digests to trust for these bytes: hash them again (slow, but right).
        return await _hash_part(path, number, part_checksum)
    return StoredPart(
        number=number,
        etag=digests.etag,
        size=digests.size,
        crc32c_b64=digests.crc32c_b64,
        sha256_b64=digests.sha256_b64,
    )


async def _read_digests(directory: Path, number: int) -> PartDigests | None:
    try:
        async with aiofiles.open(directory / f"{number}.json", "rb") as file:
            return _digests_decoder.decode(await file.read())
    except FileNotFoundError:
        return None
    except (OSError, msgspec.DecodeError) as error:
        log.warning("unreadable digests of part %d in %s: %s", number, directory, error)
        return None


async def _hash_part(path: Path, number: int, part_checksum: PartChecksum) -> StoredPart | None:
    md5 = hashlib.md5(usedforsecurity=False)
    checksum = hashlib.sha256() if part_checksum == "SHA256" else Crc32c()
    size = 0
    try:
        async with aiofiles.open(path, "rb") as chunks:
            while chunk := await chunks.read(CHUNK_SIZE):
                await asyncio.to_thread(update_all, (md5, checksum), chunk)
                size += len(chunk)
    except FileNotFoundError:
        return None
    etag = quoted_md5(md5.digest())
    if isinstance(checksum, Crc32c):
        return StoredPart(number=number, etag=etag, size=size, crc32c_b64=checksum.b64())
    digest = b64(checksum.digest())
    return StoredPart(number=number, etag=etag, size=size, crc32c_b64="", sha256_b64=digest)
