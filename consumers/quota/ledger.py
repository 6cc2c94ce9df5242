"""The quota ledger: pure rules that turn completed uploads and limit commands into a user's quota.

No I/O and no clock: the same events in the same order give the same state,
which is what lets a consumer that lost its memory rebuild it from the
snapshots it published (`restore`) and go on as if it had never stopped.

The rules:

- Usage is counted per user and per period (`schemas.periods`); the period of
  an upload is the one holding its `completed_at`, of a command the one
  holding its `occurred_at`, so a record read again after a period ended still
  lands where it did the first time. An event of a newer period than the
  state's rolls the state over: usage starts empty, the limits an admin set
  stay. An upload of an elapsed period is not charged (nobody is refused
  against an elapsed period any more).
- An upload is charged once, by its upload id, however often its completion
  arrives (redelivered, or published again with the same or a new `ce_id`).
  A completion with `duplicate_of` stored nothing new and is not charged.
- `ingest.quota.limits_set` sets the admin limits; null means the default.
- Each state remembers, per input partition, the highest offset it applied,
  so a record at or below it is skipped (`applied_already`).

The bound: a snapshot lists at most `max_listed_uploads` uploads with their
sizes (5,000 by default: about 300 KB of JSON with the service's 32-character
ids, under Kafka's 1 MiB default record size). Past it the oldest listed
uploads are folded into `unlisted_bytes` and `unlisted_uploads`: still
charged and still checkable as a sum, but no longer de-duplicated by id, so
only the input offsets protect them against being charged twice (a
redelivery is skipped; the same completion published again as a new record
would be charged again).

How it fails: it does not raise on events. `snapshot_problems` lists what is
wrong with a snapshot whose usage does not add up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

from infra.feeds import TopicPartition
from schemas import AppliedOffset, CountedUpload, QuotaLimitsSet, QuotaUpdated, UploadCompleted
from schemas.periods import current_period

MAX_LISTED_UPLOADS: Final = 5_000

LedgerInput = UploadCompleted | QuotaLimitsSet
"""The events that change a user's quota; every other event leaves it alone."""


@dataclass(frozen=True, kw_only=True)
class QuotaDefaults:
    """The service-wide limits and period length, used where no admin set a limit."""

    bytes_limit: int
    uploads_limit: int
    period_days: int
    max_listed_uploads: int = MAX_LISTED_UPLOADS

    def __post_init__(self) -> None:
        if self.period_days < 1:
            raise ValueError("a quota period lasts at least one day")
        if self.bytes_limit < 0 or self.uploads_limit < 0:
            raise ValueError("quota limits are never negative")
        if self.max_listed_uploads < 1:
            raise ValueError("a snapshot lists at least one upload")


@dataclass(frozen=True, kw_only=True)
class UserQuota:
    """One user's ledger for one period. Never mutated: the rules return a new one."""

    user_id: str
    period_start: datetime
    period_end: datetime
    # upload id -> bytes charged, in the order charged (dicts keep insertion order)
    listed: Mapping[str, int] = field(default_factory=dict)
    unlisted_bytes: int = 0
    unlisted_uploads: int = 0
    admin_bytes_limit: int | None = None
    admin_uploads_limit: int | None = None
    applied: Mapping[TopicPartition, int] = field(default_factory=dict)

    @property
    def bytes_used(self) -> int:
        return sum(self.listed.values()) + self.unlisted_bytes

    @property
    def uploads_used(self) -> int:
        return len(self.listed) + self.unlisted_uploads


@dataclass(frozen=True)
class Applied:
    """A state after one event; `changed` when usage, limits or period moved (publish it)."""

    state: UserQuota
    changed: bool


class QuotaLedger:
    """The rules of the module docstring, with the service's defaults."""

    def __init__(self, defaults: QuotaDefaults) -> None:
        self._defaults = defaults

    @property
    def defaults(self) -> QuotaDefaults:
        return self._defaults

    def start(self, user_id: str, moment: datetime) -> UserQuota:
        """A user never seen: the period holding `moment`, empty, with the default limits."""
        start, end = current_period(moment, self._defaults.period_days)
        return UserQuota(user_id=user_id, period_start=start, period_end=end)

    def restore(self, snapshot: QuotaUpdated) -> UserQuota:
        """The state a snapshot was published from."""
        return UserQuota(
            user_id=snapshot.user_id,
            period_start=snapshot.period_start,
            period_end=snapshot.period_end,
            listed={upload.upload_id: upload.size_bytes for upload in snapshot.counted_uploads},
            unlisted_bytes=snapshot.unlisted_bytes,
            unlisted_uploads=snapshot.unlisted_uploads,
            admin_bytes_limit=snapshot.admin_bytes_limit,
            admin_uploads_limit=snapshot.admin_uploads_limit,
            applied={
                TopicPartition(applied.topic, applied.partition): applied.offset
                for applied in snapshot.applied_offsets
            },
        )

    def snapshot(self, state: UserQuota, *, updated_at: datetime) -> QuotaUpdated:
        """The full snapshot of a state, ledger included."""
        defaults = self._defaults
        return QuotaUpdated(
            user_id=state.user_id,
            period_start=state.period_start,
            period_end=state.period_end,
            bytes_used=state.bytes_used,
            bytes_limit=_or_default(state.admin_bytes_limit, defaults.bytes_limit),
            uploads_used=state.uploads_used,
            uploads_limit=_or_default(state.admin_uploads_limit, defaults.uploads_limit),
            updated_at=updated_at,
            counted_uploads=[
                CountedUpload(upload_id=upload_id, size_bytes=size)
                for upload_id, size in state.listed.items()
            ],
            unlisted_bytes=state.unlisted_bytes,
            unlisted_uploads=state.unlisted_uploads,
            admin_bytes_limit=state.admin_bytes_limit,
            admin_uploads_limit=state.admin_uploads_limit,
            applied_offsets=[
                AppliedOffset(topic=partition.topic, partition=partition.partition, offset=offset)
                for partition, offset in sorted(state.applied.items())
            ],
        )

    @staticmethod
    def applied_already(state: UserQuota | None, partition: TopicPartition, offset: int) -> bool:
        """True when the state already reflects the record at `offset` of `partition`."""
        if state is None:
            return False
        return offset <= state.applied.get(partition, -1)

    def apply(
        self, state: UserQuota | None, event: LedgerInput, partition: TopicPartition, offset: int
    ) -> Applied:
        """The state after one event read at `offset` of `partition`."""
        if isinstance(event, UploadCompleted):
            applied = self._charge(state, event)
        else:
            applied = self._set_limits(state, event)
        return Applied(_record_offset(applied.state, partition, offset), applied.changed)

    def _charge(self, state: UserQuota | None, event: UploadCompleted) -> Applied:
        current, rolled_over = self._in_period_of(state, event.user_id, event.completed_at)
        if (
            current.period_start > event.completed_at  # an elapsed period
            or event.duplicate_of is not None
            or event.upload_id in current.listed
        ):
            return Applied(current, rolled_over)
        listed = dict(current.listed)
        listed[event.upload_id] = event.size_bytes
        return Applied(self._fold_past_bound(current, listed), True)

    def _set_limits(self, state: UserQuota | None, event: QuotaLimitsSet) -> Applied:
        current, rolled_over = self._in_period_of(state, event.user_id, event.occurred_at)
        limits = (event.bytes_limit, event.uploads_limit)
        if limits == (current.admin_bytes_limit, current.admin_uploads_limit):
            return Applied(current, rolled_over)
        return Applied(
            replace(current, admin_bytes_limit=limits[0], admin_uploads_limit=limits[1]), True
        )

    def _in_period_of(
        self, state: UserQuota | None, user_id: str, moment: datetime
    ) -> tuple[UserQuota, bool]:
        """The state, rolled over when `moment` is in a newer period; and whether it rolled."""
        if state is None:
            return self.start(user_id, moment), False
        start, end = current_period(moment, self._defaults.period_days)
        if start <= state.period_start:
            return state, False
        # A new period starts empty; the limits an admin set and the offsets applied stay.
        return UserQuota(
            user_id=state.user_id,
            period_start=start,
            period_end=end,
            admin_bytes_limit=state.admin_bytes_limit,
            admin_uploads_limit=state.admin_uploads_limit,
            applied=state.applied,
        ), True

    def _fold_past_bound(self, current: UserQuota, listed: dict[str, int]) -> UserQuota:
        unlisted_bytes, unlisted_uploads = current.unlisted_bytes, current.unlisted_uploads
        while len(listed) > self._defaults.max_listed_uploads:
            oldest = next(iter(listed))
            unlisted_bytes += listed.pop(oldest)
            unlisted_uploads += 1
        return replace(
            current,
            listed=listed,
            unlisted_bytes=unlisted_bytes,
            unlisted_uploads=unlisted_uploads,
        )


def snapshot_problems(snapshot: QuotaUpdated) -> list[str]:
    """What does not add up in a snapshot: empty when usage is the sum of its distinct uploads."""
    problems: list[str] = []
    ids = [upload.upload_id for upload in snapshot.counted_uploads]
    if len(set(ids)) != len(ids):
        problems.append("an upload is listed more than once")
    listed_bytes = sum(upload.size_bytes for upload in snapshot.counted_uploads)
    if snapshot.bytes_used != listed_bytes + snapshot.unlisted_bytes:
        problems.append(
            f"bytes_used {snapshot.bytes_used} is not the {listed_bytes} bytes listed "
            f"plus {snapshot.unlisted_bytes} unlisted"
        )
    if snapshot.uploads_used != len(ids) + snapshot.unlisted_uploads:
        problems.append(
            f"uploads_used {snapshot.uploads_used} is not the {len(ids)} uploads listed "
            f"plus {snapshot.unlisted_uploads} unlisted"
        )
    return problems


def _or_default(limit: int | None, default: int) -> int:
    return default if limit is None else limit


def _record_offset(state: UserQuota, partition: TopicPartition, offset: int) -> UserQuota:
    if offset <= state.applied.get(partition, -1):
        return state
    return replace(state, applied={**state.applied, partition: offset})
