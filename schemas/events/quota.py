"""The events of a user's quota: usage snapshots and the limits an admin sets.

`QuotaUpdated` is a full snapshot carrying the ledger it was computed from
(`CountedUpload`, `AppliedOffset`). Pure types: constraints are checked on
decode (see `schemas.events` for how these types may change).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from schemas.events.base import ByteCount, Count, EventBase, UploadId, UserId, UtcDatetime

__all__ = [
    "AppliedOffset",
    "CountedUpload",
    "QuotaEvent",
    "QuotaLimitsSet",
    "QuotaUpdated",
]


class QuotaEvent(EventBase, frozen=True, kw_only=True):
    """Fields shared by the quota events. Not an event itself."""

    user_id: UserId


class CountedUpload(msgspec.Struct, frozen=True, kw_only=True):
    """One upload a quota snapshot charged, with the size it charged."""

    upload_id: UploadId
    size_bytes: ByteCount


class AppliedOffset(msgspec.Struct, frozen=True, kw_only=True):
    """The highest offset of one input partition whose record a quota snapshot reflects."""

    topic: Annotated[str, Meta(min_length=1)]
    partition: Count
    offset: Count


class QuotaUpdated(
    QuotaEvent, frozen=True, kw_only=True, tag_field="type", tag="ingest.quota.updated"
):
    """A user's quota usage for the current period: a full snapshot, not a delta.

    The snapshot carries the ledger it was computed from, so anyone can check
    it: `bytes_used` is the sum of `counted_uploads` sizes plus
    `unlisted_bytes`, `uploads_used` their count plus `unlisted_uploads`, and
    no upload id appears twice. `applied_offsets` says which input records of
    this user it already reflects, so a consumer rebuilding from it skips them.
    """

    period_start: UtcDatetime
    period_end: UtcDatetime
    bytes_used: ByteCount
    bytes_limit: ByteCount
    uploads_used: Count
    uploads_limit: Count
    updated_at: UtcDatetime
    counted_uploads: Annotated[
        list[CountedUpload],
        Meta(description="the distinct uploads charged in the period, in the order charged"),
    ] = msgspec.field(default_factory=list)
    unlisted_bytes: Annotated[
        ByteCount,
        Meta(description="bytes of uploads charged in the period but no longer listed (bound)"),
    ] = 0
    unlisted_uploads: Annotated[
        Count, Meta(description="uploads charged in the period but no longer listed (bound)")
    ] = 0
    admin_bytes_limit: Annotated[
        ByteCount | None, Meta(description="the byte limit an admin set; null: the default")
    ] = None
    admin_uploads_limit: Annotated[
        Count | None, Meta(description="the upload limit an admin set; null: the default")
    ] = None
    applied_offsets: Annotated[
        list[AppliedOffset],
        Meta(description="per input partition, the highest offset of this user's records applied"),
    ] = msgspec.field(default_factory=list)


class QuotaLimitsSet(
    QuotaEvent, frozen=True, kw_only=True, tag_field="type", tag="ingest.quota.limits_set"
):
    """An admin set a user's limits; null means the service-wide default applies."""

    bytes_limit: ByteCount | None
    uploads_limit: Count | None
    set_by: Annotated[str, Meta(description="user id of the admin")]
