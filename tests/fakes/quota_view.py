"""`QuotaView` from fixed numbers: `FixedQuotaView`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ingest.ports import QuotaStatus
from schemas.periods import current_period, rfc3339

if TYPE_CHECKING:
    from ingest.ports import QuotaView


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Usage:
    bytes_limit: int
    bytes_used: int
    uploads_limit: int
    uploads_used: int = 0
    counted: frozenset[str] = frozenset()


@dataclass
class FixedQuotaView:
    """Quota status from fixed numbers: defaults for everyone, overridden per user with `set`.

    Like every quota view, it answers for the current `period_days`-day period
    by `clock`; what `set` gave a user holds in every period.
    """

    bytes_limit: int = 10 * 1024**3
    uploads_limit: int = 100
    period_days: int = 30
    clock: Callable[[], datetime] = _utc_now
    _users: dict[str, _Usage] = field(default_factory=dict, repr=False)

    def set(
        self,
        user_id: str,
        *,
        bytes_used: int = 0,
        uploads_used: int = 0,
        bytes_limit: int | None = None,
        uploads_limit: int | None = None,
        counted: Iterable[str] = (),
    ) -> None:
        self._users[user_id] = _Usage(
            bytes_limit=self.bytes_limit if bytes_limit is None else bytes_limit,
            bytes_used=bytes_used,
            uploads_limit=self.uploads_limit if uploads_limit is None else uploads_limit,
            uploads_used=uploads_used,
            counted=frozenset(counted),
        )

    def counts(self, user_id: str, upload_id: str) -> bool:
        usage = self._users.get(user_id)
        return usage is not None and upload_id in usage.counted

    async def check(self) -> None:
        return None

    def status(self, user_id: str) -> QuotaStatus:
        usage = self._users.get(user_id) or _Usage(
            bytes_limit=self.bytes_limit, bytes_used=0, uploads_limit=self.uploads_limit
        )
        start, end = current_period(self.clock(), self.period_days)
        return QuotaStatus(
            user_id=user_id,
            bytes_limit=usage.bytes_limit,
            bytes_used=usage.bytes_used,
            uploads_limit=usage.uploads_limit,
            uploads_used=usage.uploads_used,
            period_start=rfc3339(start),
            period_end=rfc3339(end),
        )


if TYPE_CHECKING:
    # mypy proves the fake still satisfies its port when the port changes.
    _quota: QuotaView = FixedQuotaView()
