"""Multipart uploads on local disk: the `ObjectStore` of `ingest dev` and of tests.

It keeps S3's multipart semantics, so the pipeline cannot tell it from the S3
adapter through the port: parts are separate files, may arrive concurrently
and in any order, each is verified against the SHA-256 sent with it before it
is kept; `complete` checks each listed part's ETag and SHA-256 against what is
stored, enforces S3's minimum part size, and assembles the object in chunks;
`abort` removes every part and may be repeated. It also offers the optional
`ResumableObjectStore` capability (tus): an upload resumed by id, even after a
restart, its stored parts listed, small objects put, read and deleted.
Layout under `root`:

    <bucket>/<key>                     objects (key segments are directories)
    .multipart/<upload_id>/manifest.json   key, bucket, content type, metadata, created
    .multipart/<upload_id>/<n>         part n, exactly the bytes uploaded
    .multipart/<upload_id>/<n>.json    part n's ETag and SHA-256, trusted only for its inode
    .multipart/<upload_id>/*.tmp       a part or the object being written
    .trash/                            aborted or completed uploads on their way out
    .tmp/                              small objects being written

Every write goes to a temporary file that is then renamed into place, so a
crash never leaves a half part or a half object under its final name. Nothing
is fsync'ed: the store survives a crash of the process, not of the machine.
The ETag of a completed object is S3's multipart ETag, `"<md5 of the part
MD5s>-<n>"`, and a part's is its quoted MD5, as in S3. Every file operation
runs off the event loop (aiofiles, or one worker thread for a whole tree).

How it fails: a part whose data does not match its SHA-256 raises
ChecksumMismatch (code `BadDigest`) and is not kept; a call on a multipart
upload that is gone raises MultipartUploadMissing (code `NoSuchUpload`); every other refusal or
disk error raises StorageError whose `details` look like the S3 adapter's
(`operation`, `bucket`, `key`, `code`, `status`; `retriable` typed) with S3's codes
where S3 has one (`NoSuchUpload`, `NoSuchKey`, `InvalidPart`, `EntityTooSmall`,
...) and the errno name otherwise. A key that cannot be a path inside the root
(empty, absolute, with an empty, `.` or `..` segment, a NUL, over 1024 bytes)
raises StorageError `InvalidObjectName`, and an upload id this store did not
issue is `NoSuchUpload`, so neither can ever reach outside the root. Unlike
S3, a key cannot be both an object and a "directory" of others (`a` and
`a/b`): the second one stored fails with StorageError. `check` raises
ServiceUnavailable unless the root is writable.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import logging
import re
import shutil
import stat
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import aiofiles
import aiofiles.os
import msgspec

from ingest.errors import (
    ChecksumMismatch,
    MultipartUploadMissing,
    ServiceUnavailable,
    StorageError,
)
from ingest.ports import StoredObject, StoredPart

if TYPE_CHECKING:
    from _hashlib import HASH

log = logging.getLogger(__name__)

MAX_PART_NUMBER: Final = 10_000
S3_MIN_PART_SIZE: Final = 5 * 1024 * 1024
"""S3's smallest part but the last; the default `min_part_size`, as the pipeline must respect it."""
MAX_KEY_BYTES: Final = 1024
CHUNK_SIZE: Final = 1024 * 1024
"""Bytes read or written at once when assembling or reading an object: the memory bound."""

_UPLOADS_DIR: Final = ".multipart"
_TRASH_DIR: Final = ".trash"
_SCRATCH_DIR: Final = ".tmp"
_MANIFEST: Final = "manifest.json"
# S3's bucket naming rules; they also keep a bucket from ever naming a hidden directory.
_BUCKET_NAME: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_UPLOAD_ID: Final = re.compile(r"[0-9a-f]{32}")
# Disk errors worth retrying: the same call may well succeed in a moment.
_RETRIABLE_ERRNOS: Final = frozenset({errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT})


class UploadManifest(msgspec.Struct, frozen=True, kw_only=True):
    """What `start_multipart` records of an upload, in `.multipart/<upload_id>/manifest.json`."""

    key: str
    bucket: str
    content_type: str | None
    metadata: dict[str, str]
    created: datetime


class _PartDigests(msgspec.Struct, frozen=True, kw_only=True):
    """Beside part n as `n.json`, so listing parts needs no hashing; trusted only for its inode."""

    etag: str
    sha256_b64: str
    size: int
    inode: int
    mtime_ns: int


_manifest_decoder: Final = msgspec.json.Decoder(UploadManifest)
_digests_decoder: Final = msgspec.json.Decoder(_PartDigests)


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


def _quoted_md5(digest: bytes) -> str:
    return f'"{digest.hex()}"'


def _part_digests(data: bytes) -> tuple[str, str]:
    """(base64 SHA-256, quoted MD5 ETag) of a part; hashlib releases the GIL, so a thread helps."""
    sha256 = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
    md5 = hashlib.md5(data, usedforsecurity=False).digest()
    return sha256, _quoted_md5(md5)


def _update(hashes: tuple[HASH, HASH], chunk: bytes) -> None:
    for digest in hashes:
        digest.update(chunk)


class _Failures:
    """Builds the domain errors of one store, with details shaped like the S3 adapter's."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    def refused(
        self, operation: str, key: str, code: str, reason: str, *, status: int = 400
    ) -> StorageError:
        return StorageError(
            f"local {operation} of {key!r} failed: {code}: {reason}",
            details=self._details(operation, key, code, status=status),
        )

    def missing_upload(self, operation: str, key: str, upload_id: str) -> MultipartUploadMissing:
        return MultipartUploadMissing(
            f"local {operation} of {key!r} failed: NoSuchUpload: "
            f"upload {upload_id} does not exist (aborted or completed)",
            details=self._details(operation, key, "NoSuchUpload", status=404),
        )

    def checksum(self, operation: str, key: str, reason: str) -> ChecksumMismatch:
        return ChecksumMismatch(
            f"the checksum of {operation} of {key!r} was refused: BadDigest: {reason}",
            details=self._details(operation, key, "BadDigest", status=400),
        )

    def disk(self, operation: str, key: str, error: OSError) -> StorageError:
        return disk_error(operation, self.bucket, key, error)

    def _details(
        self, operation: str, key: str, code: str, *, status: int | None
    ) -> dict[str, Any]:
        return _details(operation, self.bucket, key, code, status=status)


def disk_error(operation: str, bucket: str | None, key: str, error: OSError) -> StorageError:
    """The StorageError for a failed file operation; `code` is the errno name (`ENOSPC`, ...)."""
    code = errno.errorcode.get(error.errno or 0, type(error).__name__)
    return StorageError(
        f"local {operation} of {key!r} failed: {type(error).__name__}: {error}",
        details=_details(operation, bucket, key, code, status=None),
        retriable=error.errno in _RETRIABLE_ERRNOS,
    )


def _details(
    operation: str, bucket: str | None, key: str, code: str, *, status: int | None
) -> dict[str, Any]:
    return {"operation": operation, "bucket": bucket, "key": key, "code": code, "status": status}


class LocalMultipartUpload:
    """One open multipart upload of a `LocalObjectStore`; parts may arrive concurrently."""

    def __init__(
        self, store: LocalObjectStore, key: str, upload_id: str, *, verified: bool = False
    ) -> None:
        self._store = store
        self._key = key
        self._upload_id = upload_id
        # An id we never issued names no directory at all: it must not become a path.
        self._exists = _UPLOAD_ID.fullmatch(upload_id) is not None
        self._directory = store.uploads_dir / (upload_id if self._exists else "-")
        self._verified = verified

    @property
    def key(self) -> str:
        return self._key

    @property
    def upload_id(self) -> str:
        return self._upload_id

    async def upload_part(self, number: int, data: bytes, sha256_b64: str) -> StoredPart:
        fail = self._store.failures
        if not 1 <= number <= MAX_PART_NUMBER:
            raise fail.refused(
                "upload_part", self._key, "InvalidArgument", f"part number {number} is not 1-10000"
            )
        await self._verify("upload_part")
        sha256, etag = await asyncio.to_thread(_part_digests, data)
        if sha256 != sha256_b64:
            raise fail.checksum(
                "upload_part", self._key, f"part {number}: the data's SHA-256 is not {sha256_b64}"
            )
        # Own scratch names: two uploads of one part number race, and the last rename wins.
        scratch = f"{number}.{uuid.uuid4().hex}"
        temporary = self._directory / f"{scratch}.tmp"
        temporary_digests = self._directory / f"{scratch}.json.tmp"
        try:
            async with aiofiles.open(temporary, "xb") as file:
                await file.write(data)
            written = await aiofiles.os.stat(temporary)
            digests = _PartDigests(
                etag=etag,
                sha256_b64=sha256_b64,
                size=len(data),
                inode=written.st_ino,
                mtime_ns=written.st_mtime_ns,
            )
            async with aiofiles.open(temporary_digests, "xb") as file:
                await file.write(msgspec.json.encode(digests))
            # The part first: digests that end up beside another upload's bytes of this
            # part number (a race, a crash) no longer match its inode and are not trusted.
            await aiofiles.os.replace(temporary, self._directory / str(number))
            await aiofiles.os.replace(temporary_digests, self._directory / f"{number}.json")
        except FileNotFoundError:
            # The directory went away under us: the upload was aborted or completed.
            raise self._no_such_upload("upload_part") from None
        except OSError as error:
            await remove_quietly(temporary)
            await remove_quietly(temporary_digests)
            raise fail.disk("upload_part", self._key, error) from error
        except BaseException:
            await remove_quietly(temporary)
            await remove_quietly(temporary_digests)
            raise
        return StoredPart(number=number, etag=etag, size=len(data), sha256_b64=sha256_b64)

    async def stored_parts(self) -> list[StoredPart]:
        """The parts held now, by number; MultipartUploadMissing once the upload is gone."""
        await self._verify("list_parts")
        try:
            names = await aiofiles.os.listdir(self._directory)
        except FileNotFoundError:
            raise self._no_such_upload("list_parts") from None
        except OSError as error:
            raise self._store.failures.disk("list_parts", self._key, error) from error
        numbers = sorted(int(name) for name in names if name.isdigit())
        found = await asyncio.gather(*(self._stored_part(number) for number in numbers))
        return [part for part in found if part is not None]

    async def complete(self, parts: Sequence[StoredPart]) -> StoredObject:
        """Assemble the parts, in part-number order, into the object; then forget the upload.

        Like S3, a failed complete leaves the upload open, so it can be aborted.
        """
        fail = self._store.failures
        ordered = sorted(parts, key=lambda part: part.number)
        if not ordered:
            raise fail.refused(
                "complete_multipart_upload", self._key, "MalformedXML", "no parts were listed"
            )
        numbers = [part.number for part in ordered]
        if len(set(numbers)) != len(numbers):
            raise fail.refused(
                "complete_multipart_upload",
                self._key,
                "InvalidPartOrder",
                "a part number is listed twice",
            )
        destination = self._store.path_of(self._key)
        await self._verify("complete_multipart_upload")
        temporary = self._directory / f"object.{uuid.uuid4().hex}.tmp"
        try:
            await self._require_manifest("complete_multipart_upload")
            await self._check_sizes(ordered)
            size, part_md5s = await self._assemble(ordered, temporary)
            await aiofiles.os.makedirs(destination.parent, exist_ok=True)
            await aiofiles.os.replace(temporary, destination)
        except FileNotFoundError:
            await remove_quietly(temporary)
            raise self._no_such_upload("complete_multipart_upload") from None
        except OSError as error:
            await remove_quietly(temporary)
            raise fail.disk("complete_multipart_upload", self._key, error) from error
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
        manifest = await self._store.manifest(self._upload_id) if self._exists else None
        if manifest is None or manifest.key != self._key or manifest.bucket != self._store.bucket:
            raise self._no_such_upload(operation)
        self._verified = True

    async def _stored_part(self, number: int) -> StoredPart | None:
        path = self._directory / str(number)
        try:
            found = await aiofiles.os.stat(path)
        except FileNotFoundError:
            return None  # discarded meanwhile
        digests = await self._digests(number)
        if digests is None or (digests.inode, digests.mtime_ns, digests.size) != (
            found.st_ino,
            found.st_mtime_ns,
            found.st_size,
        ):
            # No digests to trust for these bytes: hash them again (slow, but right).
            return await self._hash_part(number, path)
        return StoredPart(
            number=number, etag=digests.etag, size=digests.size, sha256_b64=digests.sha256_b64
        )

    async def _digests(self, number: int) -> _PartDigests | None:
        try:
            async with aiofiles.open(self._directory / f"{number}.json", "rb") as file:
                return _digests_decoder.decode(await file.read())
        except FileNotFoundError:
            return None
        except (OSError, msgspec.DecodeError) as error:
            log.warning("unreadable digests of part %d of %s: %s", number, self._key, error)
            return None

    async def _hash_part(self, number: int, path: Path) -> StoredPart | None:
        md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
        size = 0
        try:
            async with aiofiles.open(path, "rb") as chunks:
                while chunk := await chunks.read(CHUNK_SIZE):
                    await asyncio.to_thread(_update, (md5, sha256), chunk)
                    size += len(chunk)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise self._store.failures.disk("list_parts", self._key, error) from error
        return StoredPart(
            number=number,
            etag=_quoted_md5(md5.digest()),
            size=size,
            sha256_b64=base64.b64encode(sha256.digest()).decode("ascii"),
        )

    async def _require_manifest(self, operation: str) -> None:
        try:
            await aiofiles.os.stat(self._directory / _MANIFEST)
        except FileNotFoundError:
            raise self._no_such_upload(operation) from None

    async def _check_sizes(self, ordered: Sequence[StoredPart]) -> None:
        minimum = self._store.min_part_size
        for index, part in enumerate(ordered):
            try:
                stored = await aiofiles.os.stat(self._directory / str(part.number))
            except FileNotFoundError:
                raise self._invalid_part(part, "was never stored") from None
            if index < len(ordered) - 1 and stored.st_size < minimum:
                raise self._store.failures.refused(
                    "complete_multipart_upload",
                    self._key,
                    "EntityTooSmall",
                    f"part {part.number} has {stored.st_size} bytes, under the minimum {minimum}",
                )

    async def _assemble(
        self, ordered: Sequence[StoredPart], target: Path
    ) -> tuple[int, list[bytes]]:
        """Copy the parts into `target` in chunks, checking each against its ETag and SHA-256."""
        size = 0
        part_md5s: list[bytes] = []
        async with aiofiles.open(target, "xb") as out:
            for part in ordered:
                md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
                try:
                    source = aiofiles.open(self._directory / str(part.number), "rb")
                    async with source as chunks:
                        while chunk := await chunks.read(CHUNK_SIZE):
                            await asyncio.to_thread(_update, (md5, sha256), chunk)
                            await out.write(chunk)
                            size += len(chunk)
                except FileNotFoundError:
                    # Gone since the size check: aborted meanwhile, or never there.
                    await self._require_manifest("complete_multipart_upload")
                    raise self._invalid_part(part, "was never stored") from None
                if _quoted_md5(md5.digest()) != part.etag:
                    raise self._invalid_part(part, "its ETag is not the stored part's")
                if base64.b64encode(sha256.digest()).decode("ascii") != part.sha256_b64:
                    raise self._store.failures.checksum(
                        "complete_multipart_upload",
                        self._key,
                        f"part {part.number}: the stored part's SHA-256 is not the one listed",
                    )
                part_md5s.append(md5.digest())
        return size, part_md5s

    def _invalid_part(self, part: StoredPart, reason: str) -> StorageError:
        return self._store.failures.refused(
            "complete_multipart_upload", self._key, "InvalidPart", f"part {part.number} {reason}"
        )

    def _no_such_upload(self, operation: str) -> MultipartUploadMissing:
        return self._store.failures.missing_upload(operation, self._key, self._upload_id)

    def __repr__(self) -> str:
        return f"<LocalMultipartUpload {self._key} {self._upload_id}>"


class LocalObjectStore:
    """`ObjectStore` in a directory; one bucket per instance, several may share a root.

    `min_part_size` is S3's by default so that dev runs catch what S3 would
    refuse; tests with tiny parts pass 0.
    """

    def __init__(
        self,
        root: Path,
        bucket: str,
        *,
        min_part_size: int = S3_MIN_PART_SIZE,
        check_timeout: float = 5.0,
    ) -> None:
        if not _BUCKET_NAME.fullmatch(bucket) or ".." in bucket:
            raise ValueError(f"{bucket!r} is not a valid S3 bucket name")
        if min_part_size < 0:
            raise ValueError("min_part_size must not be negative")
        self._root = root
        self._bucket = bucket
        self._objects = root / bucket
        self._uploads = root / _UPLOADS_DIR
        self._trash = root / _TRASH_DIR
        self._scratch = root / _SCRATCH_DIR
        self.min_part_size = min_part_size
        self._check_timeout = check_timeout
        self.failures = _Failures(bucket)

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def root(self) -> Path:
        return self._root

    @property
    def uploads_dir(self) -> Path:
        return self._uploads

    def path_of(self, key: str) -> Path:
        """Where the object `key` is (or would be) stored; StorageError for an unsafe key.

        For serving a completed object directly (aiohttp's FileResponse).
        """
        return self._objects.joinpath(*key_segments(key))

    async def start_multipart(
        self, key: str, *, content_type: str | None, metadata: Mapping[str, str]
    ) -> LocalMultipartUpload:
        self.path_of(key)  # refuse an unsafe key now, not at complete
        upload_id = uuid.uuid4().hex
        directory = self._uploads / upload_id
        manifest = UploadManifest(
            key=key,
            bucket=self._bucket,
            content_type=content_type,
            metadata=dict(metadata),
            created=datetime.now(UTC),
        )
        try:
            await aiofiles.os.makedirs(directory)
            # Written last and atomically: a directory without it is not an upload yet.
            await write_atomically(
                directory / _MANIFEST, msgspec.json.encode(manifest), scratch=directory
            )
        except OSError as error:
            await self._remove_tree(directory)
            raise self.failures.disk("create_multipart_upload", key, error) from error
        return LocalMultipartUpload(self, key, upload_id, verified=True)

    def resume_multipart(self, key: str, upload_id: str) -> LocalMultipartUpload:
        """A handle on an upload started earlier, by this process or a previous one.

        Like S3, nothing is checked until it is used: an upload that does not
        exist, or not for this key, fails its calls with MultipartUploadMissing.
        """
        self.path_of(key)
        return LocalMultipartUpload(self, key, upload_id)

    async def stored_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        return await self.resume_multipart(key, upload_id).stored_parts()

    async def put_object(
        self,
        key: str,
        data: bytes,
        sha256_b64: str,
        *,
        content_type: str | None,
        metadata: Mapping[str, str],
    ) -> StoredObject:
        """Store a whole object, verified against `sha256_b64`; like a completed multipart
        upload, its content type and metadata are not kept."""
        path = self.path_of(key)
        sha256, etag = await asyncio.to_thread(_part_digests, data)
        if sha256 != sha256_b64:
            raise self.failures.checksum(
                "put_object", key, f"the data's SHA-256 is not {sha256_b64}"
            )
        try:
            await aiofiles.os.makedirs(self._scratch, exist_ok=True)
            await write_atomically(path, data, scratch=self._scratch)
        except OSError as error:
            raise self.failures.disk("put_object", key, error) from error
        return StoredObject(key=key, etag=etag, size=len(data))

    async def put_small(self, key: str, data: bytes) -> None:
        """Store a small object whole, replacing any object with that key."""
        path = self.path_of(key)
        try:
            await aiofiles.os.makedirs(self._scratch, exist_ok=True)
            await write_atomically(path, data, scratch=self._scratch)
        except OSError as error:
            raise self.failures.disk("put_object", key, error) from error

    async def get_small(self, key: str) -> bytes | None:
        """A small object's bytes, or None when there is no such object."""
        try:
            async with aiofiles.open(self.path_of(key), "rb") as file:
                return await file.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as error:
            raise self.failures.disk("get_object", key, error) from error

    async def delete(self, key: str) -> None:
        """Remove an object; there being none is not an error.

        Directories its key made are kept, even when empty.
        """
        try:
            await aiofiles.os.remove(self.path_of(key))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        except OSError as error:
            raise self.failures.disk("delete_object", key, error) from error

    async def incomplete_uploads(self, key: str) -> list[str]:
        try:
            names = await aiofiles.os.listdir(self._uploads)
        except FileNotFoundError:
            return []
        except OSError as error:
            raise self.failures.disk("list_multipart_uploads", key, error) from error
        candidates = [name for name in names if _UPLOAD_ID.fullmatch(name)]
        manifests = await asyncio.gather(*(self.manifest(name) for name in candidates))
        found = [
            (manifest.created, upload_id)
            for upload_id, manifest in zip(candidates, manifests, strict=True)
            if manifest is not None and manifest.bucket == self._bucket and manifest.key == key
        ]
        # S3 lists the uploads of one key by initiation time.
        return [upload_id for _, upload_id in sorted(found)]

    async def check(self) -> None:
        """ServiceUnavailable unless a file can be written in the root within `check_timeout`."""
        probe = self._uploads / f".probe-{uuid.uuid4().hex}"
        try:
            async with asyncio.timeout(self._check_timeout):
                await aiofiles.os.makedirs(self._uploads, exist_ok=True)
                await aiofiles.os.makedirs(self._objects, exist_ok=True)
                async with aiofiles.open(probe, "xb") as file:
                    await file.write(b"ok")
                await aiofiles.os.remove(probe)
        except TimeoutError:
            raise ServiceUnavailable(
                f"the object store at {self._root} did not answer within {self._check_timeout:g} s",
                details={"root": str(self._root)},
            ) from None
        except OSError as error:
            await remove_quietly(probe)
            raise ServiceUnavailable(
                f"the object store at {self._root} is not writable: {error}",
                details={"root": str(self._root)},
                retriable=False,
            ) from error

    async def object_size(self, key: str) -> int:
        """Size of a completed object; StorageError `NoSuchKey` when there is none."""
        try:
            found = await aiofiles.os.stat(self.path_of(key))
        except (FileNotFoundError, NotADirectoryError):
            raise self._no_such_key("head_object", key) from None
        except OSError as error:
            raise self.failures.disk("head_object", key, error) from error
        if not _is_regular(found.st_mode):
            raise self._no_such_key("head_object", key)
        return found.st_size

    async def open_object(
        self, key: str, *, chunk_size: int = CHUNK_SIZE
    ) -> AsyncGenerator[bytes, None]:
        """The bytes of a completed object in chunks of at most `chunk_size`.

        StorageError `NoSuchKey` when there is none. To stop early without
        leaving the file open, iterate inside `contextlib.aclosing(...)`.
        """
        path = self.path_of(key)
        try:
            file = await aiofiles.open(path, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise self._no_such_key("get_object", key) from None
        except OSError as error:
            raise self.failures.disk("get_object", key, error) from error
        try:
            while True:
                try:
                    chunk = await file.read(chunk_size)
                except OSError as error:
                    raise self.failures.disk("get_object", key, error) from error
                if not chunk:
                    return
                yield chunk
        finally:
            await file.close()

    def read_object(self, key: str) -> AsyncGenerator[bytes, None]:
        """`open_object` with its default chunk size, as `ResumableObjectStore` names it."""
        return self.open_object(key)

    async def discard_upload(self, upload_id: str) -> None:
        """Remove an upload and all its parts; nothing to do when it is already gone.

        The directory is first renamed out of `.multipart` (atomic): from then
        on the upload is not listed, and a part still being written cannot
        land in it; only then is it deleted. A failure to delete is logged,
        since the upload is already gone for every caller.
        """
        doomed = self._trash / f"{upload_id}-{uuid.uuid4().hex}"
        try:
            await aiofiles.os.makedirs(self._trash, exist_ok=True)
            await aiofiles.os.rename(self._uploads / upload_id, doomed)
        except FileNotFoundError:
            return
        except OSError as error:
            raise self.failures.disk("abort_multipart_upload", upload_id, error) from error
        await self._remove_tree(doomed)

    async def manifest(self, upload_id: str) -> UploadManifest | None:
        """What `start_multipart` recorded of an open upload, or None when there is none."""
        try:
            async with aiofiles.open(self._uploads / upload_id / _MANIFEST, "rb") as file:
                return _manifest_decoder.decode(await file.read())
        except FileNotFoundError:
            # Being created, or discarded meanwhile: not an open upload.
            return None
        except (OSError, msgspec.DecodeError) as error:
            log.warning("skipping the unreadable multipart upload %s: %s", upload_id, error)
            return None

    async def _remove_tree(self, path: Path) -> None:
        try:
            await asyncio.to_thread(shutil.rmtree, path)
        except FileNotFoundError:
            pass
        except OSError as error:
            log.warning("could not remove %s: %s", path, error)

    def _no_such_key(self, operation: str, key: str) -> StorageError:
        return self.failures.refused(
            operation, key, "NoSuchKey", "no object has this key", status=404
        )


def _is_regular(mode: int) -> bool:
    return stat.S_ISREG(mode)
