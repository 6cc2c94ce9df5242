"""CRC32C in the form S3 wants it: the checksum every stored part carries and S3 verifies.

A part's checksum only has to catch bytes changed on the way to S3 (S3
recomputes it and refuses the part when it differs); the file's identity is
its whole-file SHA-256, computed separately. CRC32C does that job at about
20 GiB/s on one core (the `crc32c` package uses the CPU's CRC instruction,
and releases the GIL on large buffers), where a SHA-256 of each part cost
0.6 CPU-seconds per GiB. S3 and MinIO verify it on UploadPart
(`x-amz-checksum-crc32c`) and report a multipart object's checksum as the
CRC32C of its parts' checksums (`composite_crc32c`).

Multipart uploads started by earlier versions take a SHA-256 per part instead
(S3 refuses any other checksum into them): `sha256_b64` and `composite_sha256`
serve those until the last of them is completed or aborted.

Nothing here fails on valid input; a malformed base64 part checksum raises
ValueError (binascii.Error).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

import crc32c as _crc32c


def crc32c_b64(data: bytes | memoryview) -> str:
    """The base64 CRC32C of `data`, as S3's `ChecksumCRC32C` wants it (4 bytes, big-endian)."""
    return _b64(_crc32c.crc32c(data))


def composite_crc32c(part_checksums: Iterable[str]) -> str:
    """The checksum S3 reports for a multipart object: the CRC32C of its parts' CRC32Cs, `-<n>`."""
    joined = b"".join(base64.b64decode(checksum, validate=True) for checksum in part_checksums)
    return f"{_b64(_crc32c.crc32c(joined))}-{len(joined) // 4}"


def sha256_b64(data: bytes | memoryview) -> str:
    """The base64 SHA-256 of `data`, as S3's `ChecksumSHA256` wants it."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def composite_sha256(part_checksums: Iterable[str]) -> str:
    """The checksum S3 reports for a multipart object of SHA-256 parts: the SHA-256 of their
    SHA-256s, `-<n>`."""
    joined = b"".join(base64.b64decode(checksum, validate=True) for checksum in part_checksums)
    return f"{sha256_b64(joined)}-{len(joined) // 32}"


class Crc32c:
    """A running CRC32C with hashlib's `update`/`digest`, for code that feeds hash objects."""

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes | memoryview) -> None:
        self._value = _crc32c.crc32c(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")

    def b64(self) -> str:
        return _b64(self._value)


def _b64(value: int) -> str:
    return base64.b64encode(value.to_bytes(4, "big")).decode("ascii")
