"""What every event shares: the fields each carries (`EventBase`), the field types, the closed sets.

`EventBase` refuses a naive datetime (ValueError) and normalises aware ones to
UTC, on construction and on decode. The field types carry the constraints and
descriptions that land in the JSON Schemas; they are checked when a payload is
decoded, not when a Struct is built. The evolution rules are in `schemas.events`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Final, Literal, TypeAlias, get_args

import msgspec
from msgspec import Meta

__all__ = [
    "ERROR_CODES",
    "AnalysisId",
    "ByteCount",
    "Count",
    "ErrorCode",
    "EventBase",
    "Seconds",
    "Sha256Hex",
    "UploadId",
    "UploadProtocol",
    "UserId",
    "UtcDatetime",
    "VideoId",
]

ErrorCode: TypeAlias = Literal[
    "TOO_LARGE",
    "UNSUPPORTED_FORMAT",
    "QUOTA_EXCEEDED",
    "CLIENT_DISCONNECTED",
    "STORAGE_ERROR",
    "CHECKSUM_MISMATCH",
    "TIMEOUT",
    "CANCELLED",
    "INTERNAL",
]
ERROR_CODES: Final[tuple[ErrorCode, ...]] = get_args(ErrorCode)

UploadProtocol: TypeAlias = Literal["dashboard", "stream", "tus"]

# Shared field types: the constraints and descriptions land in the JSON Schemas.
UtcDatetime = Annotated[datetime, Meta(tz=True, description="RFC 3339 timestamp, UTC")]
UploadId = Annotated[str, Meta(min_length=1, description="upload (session) id")]
UserId = Annotated[str, Meta(min_length=1, description="owner: the `sub` of the uploader's token")]
VideoId = Annotated[str, Meta(min_length=1, description="id of the stored video")]
AnalysisId = Annotated[str, Meta(min_length=1, description="id of the video's analysis")]
Sha256Hex = Annotated[
    str, Meta(pattern="^[0-9a-f]{64}$", description="SHA-256 of the whole file, lowercase hex")
]
ByteCount = Annotated[int, Meta(ge=0)]
Count = Annotated[int, Meta(ge=0)]
Seconds = Annotated[float, Meta(ge=0)]


def _new_event_id() -> str:
    return uuid.uuid4().hex


def _utc_now() -> datetime:
    return datetime.now(UTC)


class EventBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Fields every event carries. Not an event itself: never instantiate it."""

    event_id: Annotated[str, Meta(min_length=1, description="unique id; the CloudEvents id")] = (
        msgspec.field(default_factory=_new_event_id)
    )
    occurred_at: UtcDatetime = msgspec.field(default_factory=_utc_now)

    def __post_init__(self) -> None:
        # Runs on construction and on decode. A naive datetime would be written
        # without an offset and then be rejected by every consumer, so refuse it
        # here, where the producer's bug is.
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, datetime):
                if value.utcoffset() is None:
                    raise ValueError(f"{name} must be timezone-aware, got naive {value!r}")
                if value.tzinfo is not UTC:
                    msgspec.structs.force_setattr(self, name, value.astimezone(UTC))
