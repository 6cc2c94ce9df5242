"""The base of every error raised on purpose, in any process, and the errors of the plumbing.

Each error carries a stable `error_code` for API clients, the `event_code`
published in a failure event when it ends an upload, and a typed `retriable`
flag: true when the same operation may succeed if tried again later (a broker
or S3 that is down), false when it never will (a refused record, a bad
request). Retry loops and the consumers' retry-or-dead-letter decision read
that flag, never the message or `details`. `details` holds what helps a
person understand the failure; it is logged, and shown to API clients only
for errors the HTTP edge decides to show.
"""

from __future__ import annotations

from typing import Any, ClassVar

from schemas import ErrorCode


class ServiceError(Exception):
    error_code: ClassVar[str] = "INTERNAL"
    event_code: ClassVar[ErrorCode] = "INTERNAL"
    retriable_by_default: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retriable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.retriable = self.retriable_by_default if retriable is None else retriable


class Unauthenticated(ServiceError):
    """A request without a valid bearer token (missing, malformed, expired, badly signed)."""

    error_code = "UNAUTHORIZED"


class ServiceUnavailable(ServiceError):
    """A dependency (Kafka, S3, the bus) cannot take work now."""

    error_code = "SERVICE_UNAVAILABLE"
    retriable_by_default = True


class EventDeliveryError(ServiceUnavailable):
    """An event could not be handed to the broker within its time bound, or was refused.

    `may_be_delivered` is true when the record was already queued in the
    producer, which keeps trying and may still deliver it: a resend can then
    duplicate it (consumers de-duplicate by `ce_id`).
    """

    error_code = "EVENT_DELIVERY_FAILED"

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retriable: bool | None = None,
        may_be_delivered: bool = False,
    ) -> None:
        super().__init__(message, details=details, retriable=retriable)
        self.may_be_delivered = may_be_delivered


class PartitionNotAssigned(ServiceError):
    """A group member committed or moved in a partition it does not own, or no longer owns.

    The group rebalanced (or the member never had it): another member reads the
    partition from the group's committed offset, so what this member did not
    commit there is delivered again. Retrying the same call never helps.
    """

    error_code = "PARTITION_NOT_ASSIGNED"


class RecordsExpired(ServiceError):
    """A reader's position is older than the oldest record its topic still keeps.

    Retention removed records it never read. Reading on means accepting that
    loss explicitly (seek to the beginning), so retrying does not help.
    """

    error_code = "RECORDS_EXPIRED"
