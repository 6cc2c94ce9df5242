"""The tus 1.0.0 vocabulary: versions, extensions, and parsing of its request headers.

Pure functions over header values, no HTTP framework: each parser returns a
typed value or raises InvalidRequest (400) naming the header, so the HTTP edge
only has to say which header it read. `Upload-Metadata` is validated strictly
(keys of printable ASCII, values base64) because its raw value is echoed back
in HEAD responses.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import urlsplit

from ingest.errors import InvalidRequest, UnsupportedProtocolVersion

VERSION: Final = "1.0.0"
SUPPORTED_VERSIONS: Final = (VERSION,)
EXTENSIONS: Final = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "termination",
    "expiration",
    "checksum",
    "concatenation",
)
CHECKSUM_ALGORITHMS: Final = ("sha1", "sha256", "md5")
OFFSET_CONTENT_TYPE: Final = "application/offset+octet-stream"

UPLOAD_PATHS: Final = ("/v1/tus/", "/v1/uploads/")
"""Where a partial upload named in `Upload-Concat: final;...` may live: its tus URL, or the
session route of the same id."""
MAX_PARTIALS: Final = 1_000
"""Partial uploads one final may join (each takes at least one of S3's 10,000 parts)."""

_METADATA_KEY = re.compile(r"^[!-+\--~]+$")  # printable ASCII without space and comma
_REFERENCE = re.compile(r"^[!-~]{1,2048}$")  # printable ASCII, no space (RFC 3986)
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_DIGITS = re.compile(r"^[0-9]+$")


def check_version(value: str | None) -> None:
    """Refuse a request that does not speak tus 1.0.0 (412, before anything else is done)."""
    if value != VERSION:
        raise UnsupportedProtocolVersion(
            f"Tus-Resumable must be {VERSION}, got {value!r}",
            details={"tus_version": list(SUPPORTED_VERSIONS), "received": value},
        )


def parse_offset(value: str | None) -> int:
    if value is None:
        raise InvalidRequest("Upload-Offset is required", details={"header": "Upload-Offset"})
    return _non_negative(value, "Upload-Offset")


def parse_length(value: str | None) -> int | None:
    return None if value is None else _non_negative(value, "Upload-Length")


def parse_creation_length(length: str | None, defer: str | None) -> int | None:
    """The Upload-Length of a creation request; None when the client defers it."""
    if defer is not None:
        if defer.strip() != "1":
            raise InvalidRequest(
                "Upload-Defer-Length must be 1", details={"header": "Upload-Defer-Length"}
            )
        if length is not None:
            raise InvalidRequest(
                "send either Upload-Length or Upload-Defer-Length, not both",
                details={"header": "Upload-Length"},
            )
        return None
    if length is None:
        raise InvalidRequest(
            "Upload-Length (or Upload-Defer-Length: 1) is required",
            details={"header": "Upload-Length"},
        )
    return _non_negative(length, "Upload-Length")


def parse_metadata(value: str | None) -> dict[str, str]:
    """Upload-Metadata as a dict: `key base64value` pairs separated by commas."""
    if value is None or not value.strip():
        return {}
    metadata: dict[str, str] = {}
    for pair in value.split(","):
        key, _, encoded = pair.strip().partition(" ")
        encoded = encoded.strip()
        if not _METADATA_KEY.match(key) or key in metadata:
            raise InvalidRequest(
                f"Upload-Metadata has an invalid or repeated key {key!r}",
                details={"header": "Upload-Metadata"},
            )
        metadata[key] = _decode_base64(encoded, "Upload-Metadata").decode("utf-8", "replace")
    return metadata


@dataclass(frozen=True)
class Checksum:
    algorithm: str
    digest: bytes


def parse_checksum(value: str | None) -> Checksum | None:
    """Upload-Checksum: `<algorithm> <base64 digest>`; 400 for an algorithm not supported."""
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise InvalidRequest(
            f"checksum algorithm {algorithm!r} is not supported "
            f"(supported: {', '.join(CHECKSUM_ALGORITHMS)})",
            details={"header": "Upload-Checksum", "supported": list(CHECKSUM_ALGORITHMS)},
        )
    digest = _decode_base64(encoded.strip(), "Upload-Checksum")
    if len(digest) != hashlib.new(algorithm).digest_size:
        raise InvalidRequest(
            f"the {algorithm} digest in Upload-Checksum has the wrong length",
            details={"header": "Upload-Checksum"},
        )
    return Checksum(algorithm, digest)


@dataclass(frozen=True)
class Concat:
    """`Upload-Concat` of a creation request: a partial upload, or a final one joining others."""

    references: tuple[str, ...] = ()
    """The partial uploads' URLs, in order, as sent; empty for a partial upload."""

    @property
    def is_final(self) -> bool:
        return bool(self.references)

    @property
    def header(self) -> str:
        """The header's value, as HEAD answers it."""
        return f"final;{' '.join(self.references)}" if self.references else "partial"


def parse_concat(value: str | None) -> Concat | None:
    """`partial`, or `final;<url> <url> ...` (absolute URLs or paths); None when absent."""
    if value is None:
        return None
    cleaned = value.strip()
    if cleaned == "partial":
        return Concat()
    kind, semicolon, listed = cleaned.partition(";")
    references = tuple(listed.split())
    if kind.strip() != "final" or not semicolon or not references:
        raise InvalidRequest(
            "Upload-Concat must be `partial` or `final;` followed by the partial uploads' URLs",
            details={"header": "Upload-Concat"},
        )
    if len(references) > MAX_PARTIALS:
        raise InvalidRequest(
            f"a final upload joins at most {MAX_PARTIALS} partial uploads",
            details={"header": "Upload-Concat", "max_partials": MAX_PARTIALS},
        )
    if not all(_REFERENCE.match(reference) for reference in references):
        raise InvalidRequest(
            "Upload-Concat holds a URL that is not printable ASCII or is too long",
            details={"header": "Upload-Concat"},
        )
    return Concat(references)


def upload_id_of(reference: str) -> str | None:
    """The upload id a partial upload's URL names (its path ends `/v1/tus/<id>`, behind any
    prefix a proxy adds), or None."""
    path = urlsplit(reference).path.rstrip("/")
    for prefix in UPLOAD_PATHS:
        _, found, upload_id = path.rpartition(prefix)
        if found and _UPLOAD_ID.match(upload_id):
            return upload_id
    return None


def http_date(moment: datetime) -> str:
    """An RFC 9110 date (`Wed, 25 Jun 2014 16:00:00 GMT`), as Upload-Expires wants it."""
    return email.utils.format_datetime(moment.astimezone(UTC), usegmt=True)


def _non_negative(value: str, header: str) -> int:
    cleaned = value.strip()
    if not _DIGITS.match(cleaned):
        raise InvalidRequest(
            f"{header} must be a non-negative integer, got {value!r}", details={"header": header}
        )
    return int(cleaned)


def _decode_base64(encoded: str, header: str) -> bytes:
    if not _BASE64.match(encoded):
        raise InvalidRequest(
            f"{header} holds a value that is not base64", details={"header": header}
        )
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise InvalidRequest(
            f"{header} holds a value that is not base64", details={"header": header}
        ) from None


@dataclass(frozen=True)
class Creation:
    """What a creation request asks for (its Upload-Concat but `final`, which `Concat` holds)."""

    length: int | None
    metadata: dict[str, str]
    metadata_header: str | None
    partial: bool = False
    """Upload-Concat: partial: a piece of a file, joined later by a final upload."""


@dataclass(frozen=True)
class PatchRequest:
    offset: int
    length: int | None = None
    """Upload-Length sent with the PATCH, for an upload whose length was deferred."""
    checksum: Checksum | None = None
    content_length: int | None = None


@dataclass(frozen=True)
class UploadInfo:
    """What HEAD and PATCH tell the client about an upload."""

    offset: int
    length: int | None
    metadata_header: str | None
    expires_at: datetime | None
    concat: str | None = None
    """`Upload-Concat` as the upload was created with, for a partial or final upload."""
    joining: bool = False
    """A final upload whose partial uploads are still being joined: its offset is not known."""
