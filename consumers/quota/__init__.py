"""The quota consumer: a pure ledger (`ledger`), its state kept in the snapshots it publishes
(`snapshots`), and the `ConsumerApp` that runs them (`app`, built by `quota_app`)."""

from consumers.quota.app import QuotaApp, SnapshotSink, quota_app
from consumers.quota.ledger import QuotaDefaults, QuotaLedger, UserQuota, snapshot_problems

__all__ = [
    "QuotaApp",
    "QuotaDefaults",
    "QuotaLedger",
    "SnapshotSink",
    "UserQuota",
    "quota_app",
    "snapshot_problems",
]
