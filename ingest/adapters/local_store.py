"""Objects and multipart uploads on local disk: the `ObjectStore` of `ingest dev` and of tests.

It keeps S3's semantics, so the pipeline cannot tell it from the S3 adapter
through the port (the upload itself is `local_multipart`'s). It also offers the
optional `ResumableObjectStore` capability (tus): an upload resumed by id, even
after a restart, its stored parts listed, small objects put, read and deleted;
and `PartCopying` (tus concatenation): an object assembled from stored ones.
Layout under `root`:

    <bucket>/<key>           objects (key segments are directories)
    .multipart/<upload_id>/  one open upload: manifest and parts (see `local_parts`)
    .trash/                  aborted or completed uploads on their way out
    .tmp/                    small objects being written

Every write goes to a temporary file that is then renamed into place, so a
crash never leaves a half part or a half object under its final name. Nothing
is fsync'ed: the store survives a crash of the process, not of the machine.
Every file operation runs off the event loop (aiofiles, or one worker thread
for a whole tree).

How it fails: an object whose data does not match its SHA-256 raises
ChecksumMismatch (`BadDigest`) and is not kept; every other refusal or disk
error raises StorageError with `details` like the S3 adapter's (see
`local_failures`): a missing object is `NoSuchKey`, a key that cannot be a
path inside the root `InvalidObjectName` (see `local_files`). Unlike S3, a key
cannot be both an object and a "directory" of others (`a` and `a/b`): the
second one stored fails with StorageError. `check` raises ServiceUnavailable
unless the root is writable.
"""

from __future__ import annotations

import asyncio
import re
import stat
import uuid
from collections.abc import AsyncGenerator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import aiofiles
import aiofiles.os
import msgspec

from infra.describe import in_words
from ingest.adapters.local_failures import LocalFailures
from ingest.adapters.local_files import (
    key_segments,
    remove_quietly,
    remove_tree_quietly,
    write_atomically,
)
from ingest.adapters.local_multipart import LocalMultipartUpload
from ingest.adapters.local_parts import (
    CHUNK_SIZE,
    MANIFEST,
    UPLOAD_ID,
    UploadManifest,
    object_digests,
    read_manifest,
)
from ingest.errors import ServiceUnavailable, StorageError
from ingest.ports import STARTED_PART_CHECKSUM, PartChecksum, StoredObject, StoredPart

S3_MIN_PART_SIZE: Final = 5 * 1024 * 1024
"""S3's smallest part but the last; the default `min_part_size`, as the pipeline must respect it."""

_UPLOADS_DIR: Final = ".multipart"
_TRASH_DIR: Final = ".trash"
_SCRATCH_DIR: Final = ".tmp"
# S3's bucket naming rules; they also keep a bucket from ever naming a hidden directory.
_BUCKET_NAME: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


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
        self.failures = LocalFailures(bucket)

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
        self,
        key: str,
        *,
        content_type: str | None,
        metadata: Mapping[str, str],
        part_checksum: PartChecksum = STARTED_PART_CHECKSUM,
    ) -> LocalMultipartUpload:
        """`part_checksum="SHA256"` opens an upload as earlier versions did (for tests of
        what resumes one): its parts keep a SHA-256."""
        return await self._start(key, content_type, metadata, part_checksum=part_checksum)

    async def start_copy_multipart(
        self, key: str, *, content_type: str | None, metadata: Mapping[str, str]
    ) -> LocalMultipartUpload:
        """An upload whose parts are copied from stored objects; like S3's, without per-part
        checksums (`complete` still checks each part's ETag)."""
        return await self._start(key, content_type, metadata, part_checksum=None)

    async def _start(
        self,
        key: str,
        content_type: str | None,
        metadata: Mapping[str, str],
        *,
        part_checksum: PartChecksum | None,
    ) -> LocalMultipartUpload:
        """`part_checksum` None: parts copied from objects, which carry none."""
        self.path_of(key)  # refuse an unsafe key now, not at complete
        upload_id = uuid.uuid4().hex
        directory = self._uploads / upload_id
        manifest = UploadManifest(
            key=key,
            bucket=self._bucket,
            content_type=content_type,
            metadata=dict(metadata),
            created=datetime.now(UTC),
            checksums=part_checksum is not None,
            part_checksum=part_checksum or STARTED_PART_CHECKSUM,
        )
        try:
            await aiofiles.os.makedirs(directory)
            # Written last and atomically: a directory without it is not an upload yet.
            await write_atomically(
                directory / MANIFEST, msgspec.json.encode(manifest), scratch=directory
            )
        except OSError as error:
            await remove_tree_quietly(directory)
            raise self.failures.disk("create_multipart_upload", key, error) from error
        return LocalMultipartUpload(
            self,
            key,
            upload_id,
            verified=True,
            checksums=manifest.checksums,
            part_checksum=manifest.part_checksum,
        )

    def resume_multipart(
        self, key: str, upload_id: str, part_checksum: PartChecksum | None = None
    ) -> LocalMultipartUpload:
        """A handle on an upload started earlier, by this process or a previous one.

        Like S3, nothing is checked until it is used: an upload that does not
        exist, or not for this key, fails its calls with MultipartUploadMissing.
        What its parts carry is read from its manifest then, whatever `part_checksum` says.
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
        sha256, etag = await asyncio.to_thread(object_digests, data)
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

    async def stored_size(self, key: str) -> int | None:
        try:
            return await self.object_size(key)
        except StorageError as error:
            if error.details.get("code") == "NoSuchKey":
                return None
            raise

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
        candidates = [name for name in names if UPLOAD_ID.fullmatch(name)]
        manifests = await asyncio.gather(
            *(read_manifest(self._uploads / name) for name in candidates)
        )
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
                f"the object store at {self._root} is not writable: {in_words(error)}",
                details={"root": str(self._root)},
                retriable=False,
            ) from error

    async def object_size(self, key: str) -> int:
        """Size of a completed object; StorageError `NoSuchKey` when there is none."""
        try:
            found = await aiofiles.os.stat(self.path_of(key))
        except (FileNotFoundError, NotADirectoryError):
            raise self.failures.missing_key("head_object", key) from None
        except OSError as error:
            raise self.failures.disk("head_object", key, error) from error
        if not stat.S_ISREG(found.st_mode):
            raise self.failures.missing_key("head_object", key)
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
            raise self.failures.missing_key("get_object", key) from None
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
        await remove_tree_quietly(doomed)
