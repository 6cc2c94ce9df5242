"""The quota ledger's rules: each upload charged once, duplicates free, limits, periods, checks."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import msgspec

from consumers.quota import QuotaLedger, UserQuota, snapshot_problems
from infra.env import GiB
from infra.feeds import TopicPartition
from schemas import QuotaLimitsSet, QuotaUpdated, UploadCompleted, decode, encode
from tests.quota_support import DEFAULTS, NOW, completed, limits_set

UPLOADS = TopicPartition("ingest.uploads", 3)
COMMANDS = TopicPartition("ingest.quota.commands", 3)
LEDGER = QuotaLedger(DEFAULTS)


def run(*events: UploadCompleted | QuotaLimitsSet, ledger: QuotaLedger = LEDGER) -> UserQuota:
    """Apply events in order, each at the next offset of its input partition."""
    state: UserQuota | None = None
    offsets = {UPLOADS: 0, COMMANDS: 0}
    for event in events:
        partition = UPLOADS if isinstance(event, UploadCompleted) else COMMANDS
        state = ledger.apply(state, event, partition, offsets[partition]).state
        offsets[partition] += 1
    assert state is not None
    return state


def test_an_upload_is_charged_once_however_often_its_completion_arrives() -> None:
    first = completed("u1", 100)
    again_new_ce_id = completed("u1", 100)
    state = run(first, first, again_new_ce_id, completed("u2", 50))

    assert (state.bytes_used, state.uploads_used) == (150, 2)
    assert dict(state.listed) == {"u1": 100, "u2": 50}


def test_the_same_completion_again_changes_nothing_to_publish() -> None:
    state = LEDGER.apply(None, completed("u1", 100), UPLOADS, 0).state
    again = LEDGER.apply(state, completed("u1", 100), UPLOADS, 7)

    assert not again.changed
    assert again.state.bytes_used == 100
    assert again.state.applied[UPLOADS] == 7  # the offset moves on all the same


def test_a_completion_that_duplicates_a_stored_file_is_not_charged() -> None:
    state = run(completed("u1", 100), completed("u2", 100, duplicate_of="vid-1"))

    assert (state.bytes_used, state.uploads_used) == (100, 1)


def test_limits_an_admin_set_replace_the_defaults_and_null_brings_them_back() -> None:
    state = run(limits_set(20 * GiB, None), completed("u1", 1))
    snapshot = LEDGER.snapshot(state, updated_at=NOW)
    assert (snapshot.bytes_limit, snapshot.uploads_limit) == (20 * GiB, DEFAULTS.uploads_limit)
    assert (snapshot.admin_bytes_limit, snapshot.admin_uploads_limit) == (20 * GiB, None)

    reset = LEDGER.snapshot(run(limits_set(20 * GiB, 7), limits_set(None, None)), updated_at=NOW)
    assert (reset.bytes_limit, reset.uploads_limit) == (DEFAULTS.bytes_limit, 100)


def test_setting_the_same_limits_again_changes_nothing() -> None:
    state = run(limits_set(5, 5))
    assert not LEDGER.apply(state, limits_set(5, 5), COMMANDS, 9).changed
    assert LEDGER.apply(state, limits_set(6, 5), COMMANDS, 9).changed


def test_a_new_period_starts_empty_but_keeps_the_admin_limits() -> None:
    later = NOW + timedelta(days=DEFAULTS.period_days)
    state = run(limits_set(20 * GiB, 3), completed("u1", 100), completed("u2", 5, at=later))

    assert (state.bytes_used, state.uploads_used) == (5, 1)
    assert state.period_start <= later < state.period_end
    assert (state.admin_bytes_limit, state.admin_uploads_limit) == (20 * GiB, 3)


def test_a_late_completion_of_an_elapsed_period_is_not_charged_to_the_current_one() -> None:
    earlier = NOW - timedelta(days=DEFAULTS.period_days)
    state = run(completed("u1", 100), completed("u0", 7, at=earlier))

    assert (state.bytes_used, state.uploads_used) == (100, 1)
    assert state.period_start <= NOW


def test_the_period_rolls_over_on_a_newer_event_even_one_that_charges_nothing() -> None:
    state = LEDGER.apply(None, completed("u1", 100), UPLOADS, 0).state
    later = NOW + timedelta(days=DEFAULTS.period_days)
    rolled = LEDGER.apply(state, completed("u9", 1, at=later, duplicate_of="v"), UPLOADS, 1)

    assert rolled.changed  # the empty new period is worth publishing
    assert rolled.state.bytes_used == 0


def test_records_at_or_below_the_applied_offset_are_recognised() -> None:
    state = run(completed("u1", 1), completed("u2", 1))

    assert LEDGER.applied_already(state, UPLOADS, 1)
    assert LEDGER.applied_already(state, UPLOADS, 0)
    assert not LEDGER.applied_already(state, UPLOADS, 2)
    assert not LEDGER.applied_already(state, COMMANDS, 0)
    assert not LEDGER.applied_already(None, UPLOADS, 0)


def test_a_snapshot_restores_the_state_it_was_published_from_through_the_wire() -> None:
    state = run(limits_set(None, 9), completed("u1", 100), completed("u2", 7))
    snapshot = LEDGER.snapshot(state, updated_at=NOW)
    encoded = encode(snapshot, source="/quota/unit")
    decoded = decode(encoded.value, encoded.headers)

    assert isinstance(decoded, QuotaUpdated)
    assert LEDGER.restore(decoded) == state
    assert [(o.topic, o.partition, o.offset) for o in decoded.applied_offsets] == [
        (COMMANDS.topic, 3, 0),
        (UPLOADS.topic, 3, 1),
    ]


def test_usage_in_a_snapshot_is_the_sum_of_its_distinct_uploads() -> None:
    snapshot = LEDGER.snapshot(run(completed("u1", 100), completed("u2", 7)), updated_at=NOW)
    assert snapshot_problems(snapshot) == []
    assert snapshot.bytes_used == sum(u.size_bytes for u in snapshot.counted_uploads)

    inflated = msgspec.structs.replace(snapshot, bytes_used=200, uploads_used=3)
    assert len(snapshot_problems(inflated)) == 2
    twice = msgspec.structs.replace(
        snapshot, counted_uploads=[snapshot.counted_uploads[0]] * 2, bytes_used=200, uploads_used=2
    )
    assert snapshot_problems(twice) == ["an upload is listed more than once"]


def test_past_the_listing_bound_the_oldest_uploads_are_folded_and_still_add_up() -> None:
    ledger = QuotaLedger(replace(DEFAULTS, max_listed_uploads=2))
    state = run(*(completed(f"u{n}", n) for n in range(1, 6)), ledger=ledger)

    assert list(state.listed) == ["u4", "u5"]
    assert (state.unlisted_uploads, state.unlisted_bytes) == (3, 1 + 2 + 3)
    snapshot = ledger.snapshot(state, updated_at=NOW)
    assert (snapshot.bytes_used, snapshot.uploads_used) == (15, 5)
    assert snapshot_problems(snapshot) == []
    # Listed uploads are still de-duplicated by id.
    assert not ledger.apply(state, completed("u5", 5), UPLOADS, 99).changed
