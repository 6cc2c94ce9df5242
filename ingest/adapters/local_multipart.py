"""One multipart upload of the local object store, with S3's semantics.

Parts may arrive concurrently and in any order; each is verified against the
CRC32C sent with it before it is kept (`local_parts` writes it). `complete`
checks each listed part's ETag and CRC32C against what is stored, enforces
the store's minimum part size (S3's by default), assembles the object in
chunks beside the parts and renames it into place, then forgets the upload;
its ETag is S3's multipart ETag, `"<md5 of the part MD5s>-<n>"`. `abort`
removes every part and may be repeated. An upload started by
`start_copy_multipart` takes parts copied from stored objects (`copy_part`,
in chunks) and, like S3's, checks no per-part CRC32C at `complete`. An upload
opened as earlier versions did (`part_checksum="SHA256"`) keeps each part's
SHA-256 instead, after checking the CRC32C it was sent with, and `complete`
checks those. A handle made by `resume_multipart` checks on first use that the
upload exists for its key, and learns there what its parts carry.

How it fails: a part whose data does not match its CRC32C, or a listed part
whose stored CRC32C (or SHA-256) differs, raises ChecksumMismatch (`BadDigest`) and is not
kept; a call on an upload that is gone, or not this key's, or whose id this
store never issued, raises MultipartUploadMissing (`NoSuchUpload`); every other
refusal (`InvalidPart`, `EntityTooSmall`, `InvalidArgument`, ...) or disk
error raises StorageError (see `local_failures`). Like S3, a failed complete
leaves the upload open, to be aborted.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

import aiofiles
import aiofiles.os

from infra.checksums import Crc32c
from ingest.adapters.local_failures import LocalFailures
from ingest.adapters.local_files import remove_quietly
from ingest.adapters.local_parts import (
    CHUNK_SIZE,
    MANIFEST,
    UPLOAD_ID,
    b64,
    copy_part,
    part_digests,
    part_numbers,
    quoted_md5,
    read_manifest,
    read_part,
    sha256_part_digests,
    update_all,
    write_part,
)
from ingest.errors import MultipartUploadMissing, StorageError
from ingest.ports import STARTED_PART_CHECKSUM, PartChecksum, StoredObject, StoredPart

if TYPE_CHECKING:
    from _hashlib import HASH

log = logging.getLogger(__name__)

MAX_PART_NUMBER: Final = 10_000
_COMPLETE: Final = "complete_multipart_upload"


class UploadsHome(Protocol):
    """What an upload needs from the store that holds it (named here, not imported, so the
    store and its uploads do not import each other)."""

    min_part_size: int
    failures: LocalFailures

    @property
    def bucket(self) -> str: ...

    @property
    def uploads_dir(self) -> Path: ...

    def path_of(self, key: str) -> Path: ...

    async def discard_upload(self, upload_id: str) -> None: ...


class LocalMultipartUpload:
    """One open multipart upload of a `LocalObjectStore`; parts may arrive concurrently."""

    def __init__(
        self,
        store: UploadsHome,
        key: str,
        upload_id: str,
        *,
        verified: bool = False,
        checksums: bool = True,
        part_checksum: PartChecksum = STARTED_PART_CHECKSUM,
    ) -> None:
        """`checksums` and `part_checksum` are the manifest's; a handle not `verified` reads
        them from it on first use."""
        self._store = store
        self._checksums = checksums
        """Whether `complete` checks each part's checksum (not for parts copied from objects)."""
        self._part_checksum = part_checksum
        self._key = key
        self._upload_id = upload_id
        # An id we never issued names no directory at all: it must not become a path.
        self._exists = UPLOAD_ID.fullmatch(upload_id) is not None
        self._directory = store.uploads_dir / (upload_id if self._exists else "-")
        self._verified = verified
        self._fail = store.failures

    @property
    def key(self) -> str:
        return self._key

    @property
    def upload_id(self) -> str:
        return self._upload_id

    async def upload_part(self, number: int, data: bytes, crc32c_b64: str) -> StoredPart:
        if not 1 <= number <= MAX_PART_NUMBER:
            raise self._fail.refused(
                "upload_part", self._key, "InvalidArgument", f"part number {number} is not 1-10000"
            )
        await self._verify("upload_part")
        if self._part_checksum == "SHA256":
            crc, sha256, etag = await asyncio.to_thread(sha256_part_digests, data)
            part = StoredPart(
                number=number, etag=etag, size=len(data), crc32c_b64="", sha256_b64=sha256
            )
        else:
            crc, etag = await asyncio.to_thread(part_digests, data)
            part = StoredPart(number=number, etag=etag, size=len(data), crc32c_b64=crc)
        if crc != crc32c_b64:
            raise self._fail.checksum(
                "upload_part", self._key, f"part {number}: the data's CRC32C is not {crc32c_b64}"
            )
        try:
            await write_part(
                self._directory,
                number,
                data,
                crc32c_b64=part.crc32c_b64,
                etag=etag,
                sha256_b64=part.sha256_b64,
            )
        except FileNotFoundError:
            # The directory went away under us: the upload was aborted or completed.
            raise self._missing("upload_part") from None
        except OSError as error:
            raise self._fail.disk("upload_part", self._key, error) from error
        return part

    async def copy_part(
        self, number: int, source_key: str, byte_range: tuple[int, int] | None = None
    ) -> StoredPart:
        """Part `number` copied from the stored object `source_key`, in chunks."""
        operation = "upload_part_copy"
        if not 1 <= number <= MAX_PART_NUMBER:
            raise self._fail.refused(
                operation, self._key, "InvalidArgument", f"part number {number} is not 1-10000"
            )
        await self._verify(operation)
        source = self._store.path_of(source_key)
        try:
            size = (await aiofiles.os.stat(source)).st_size
        except (FileNotFoundError, NotADirectoryError):
            raise self._fail.missing_key(operation, source_key) from None
        start, end = byte_range if byte_range is not None else (0, size)
        if not 0 <= start < end <= size:
            raise self._fail.refused(
                operation, source_key, "InvalidRange", f"{byte_range} is not within {size} bytes"
            )
        try:
            _, etag = await copy_part(self._directory, number, source, start, end)
        except FileNotFoundError:
            raise self._missing(operation) from None
        except OSError as error:
            raise self._fail.disk(operation, self._key, error) from error
        return StoredPart(number=number, etag=etag, size=end - start, crc32c_b64="")

    async def stored_parts(self) -> list[StoredPart]:
        """The parts held now, by number; MultipartUploadMissing once the upload is gone."""
        await self._verify("list_parts")
        try:
            numbers = await part_numbers(self._directory)
            found = await asyncio.gather(
                *(read_part(self._directory, number, self._part_checksum) for number in numbers)
            )
        except FileNotFoundError:
            raise self._missing("list_parts") from None
        except OSError as error:
            raise self._fail.disk("list_parts", self._key, error) from error
        return [part for part in found if part is not None]

    async def complete(self, parts: Sequence[StoredPart]) -> StoredObject:
        """Assemble the parts, in part-number order, into the object; then forget the upload.

        Like S3, a failed complete leaves the upload open, so it can be aborted.
        """
        ordered = sorted(parts, key=lambda part: part.number)
        if not ordered:
            raise self._fail.refused(_COMPLETE, self._key, "MalformedXML", "no parts were listed")
        numbers = [part.number for part in ordered]
        if len(set(numbers)) != len(numbers):
            raise self._fail.refused(
                _COMPLETE, self._key, "InvalidPartOrder", "a part number is listed twice"
            )
        destination = self._store.path_of(self._key)
        await self._verify(_COMPLETE)
        temporary = self._directory / f"object.{uuid.uuid4().hex}.tmp"
        try:
            await self._require_manifest(_COMPLETE)
            await self._check_sizes(ordered)
            size, part_md5s = await self._assemble(ordered, temporary)
            await aiofiles.os.makedirs(destination.parent, exist_ok=True)
            await aiofiles.os.replace(temporary, destination)
        except FileNotFoundError:
            await remove_quietly(temporary)
            raise self._missing(_COMPLETE) from None
        except OSError as error:
            await remove_quietly(temporary)
            raise self._fail.disk(_COMPLETE, self._key, error) from error
        except BaseException:
            await remove_quietly(temporary)
            raise
        try:
            await self._store.discard_upload(self._upload_id)
        except StorageError as error:
            # The object is stored: parts left behind are only disk space, never a failure.
            log.warning("completed %s, but could not remove its parts: %s", self._key, error)
        etag = hashlib.md5(b"".join(part_md5s), usedforsecurity=False).hexdigest()
        return StoredObject(key=self._key, etag=f'"{etag}-{len(ordered)}"', size=size)

    async def abort(self) -> None:
        try:
            await self._verify("abort_multipart_upload")
        except MultipartUploadMissing:
            return  # aborted or completed already, or another key's: nothing of ours left
        await self._store.discard_upload(self._upload_id)

    async def _verify(self, operation: str) -> None:
        """MultipartUploadMissing unless the upload exists for this key (checked on first use)."""
        if self._verified:
            return
        manifest = await read_manifest(self._directory) if self._exists else None
        if manifest is None or manifest.key != self._key or manifest.bucket != self._store.bucket:
            raise self._missing(operation)
        self._checksums = manifest.checksums
        self._part_checksum = manifest.part_checksum
        self._verified = True

    async def _require_manifest(self, operation: str) -> None:
        try:
            await aiofiles.os.stat(self._directory / MANIFEST)
        except FileNotFoundError:
            raise self._missing(operation) from None

    async def _check_sizes(self, ordered: Sequence[StoredPart]) -> None:
        minimum = self._store.min_part_size
        for index, part in enumerate(ordered):
            try:
                stored = await aiofiles.os.stat(self._directory / str(part.number))
            except FileNotFoundError:
                raise self._invalid_part(part, "was never stored") from None
            if index < len(ordered) - 1 and stored.st_size < minimum:
                raise self._fail.refused(
                    _COMPLETE,
                    self._key,
                    "EntityTooSmall",
                    f"part {part.number} has {stored.st_size} bytes, under the minimum {minimum}",
                )

    async def _assemble(
        self, ordered: Sequence[StoredPart], target: Path
    ) -> tuple[int, list[bytes]]:
        """Copy the parts into `target` in chunks, checking each against its ETag and checksum."""
        size = 0
        part_md5s: list[bytes] = []
        async with aiofiles.open(target, "xb") as out:
            for part in ordered:
                md5 = hashlib.md5(usedforsecurity=False)
                checksum = hashlib.sha256() if self._part_checksum == "SHA256" else Crc32c()
                try:
                    source = aiofiles.open(self._directory / str(part.number), "rb")
                    async with source as chunks:
                        while chunk := await chunks.read(CHUNK_SIZE):
                            await asyncio.to_thread(update_all, (md5, checksum), chunk)
                            await out.write(chunk)
                            size += len(chunk)
                except FileNotFoundError:
                    # Gone since the size check: aborted meanwhile, or never there.
                    await self._require_manifest(_COMPLETE)
                    raise self._invalid_part(part, "was never stored") from None
                if quoted_md5(md5.digest()) != part.etag:
                    raise self._invalid_part(part, "its ETag is not the stored part's")
                if self._checksums and not _matches(part, checksum):
                    raise self._fail.checksum(
                        _COMPLETE,
                        self._key,
                        f"part {part.number}: the stored part's checksum is not the one listed",
                    )
                part_md5s.append(md5.digest())
        return size, part_md5s

    def _invalid_part(self, part: StoredPart, reason: str) -> StorageError:
        return self._fail.refused(
            _COMPLETE, self._key, "InvalidPart", f"part {part.number} {reason}"
        )

    def _missing(self, operation: str) -> MultipartUploadMissing:
        return self._fail.missing_upload(operation, self._key, self._upload_id)

    def __repr__(self) -> str:
        return f"<LocalMultipartUpload {self._key} {self._upload_id}>"


def _matches(part: StoredPart, checksum: HASH | Crc32c) -> bool:
    """Whether the checksum listed for `part` is the one its stored bytes have."""
    if isinstance(checksum, Crc32c):
        return checksum.b64() == part.crc32c_b64
    return b64(checksum.digest()) == part.sha256_b64
