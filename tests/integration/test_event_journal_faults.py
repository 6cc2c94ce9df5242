"""The event journal under real faults: Kafka SIGKILLed under uploads, `ingest serve` SIGKILLed.

Each test runs a private Kafka broker (killed and restarted on its data and
port) and a real `ingest serve` process on it and on the shared MinIO, with
the scenarios of `benchmarks.faults` (short outages here; the long one is
`python -m benchmarks faults`). Every upload must be answered 201 while the
broker is still down, and once it is back every lifecycle event of every
upload must be on `ingest.uploads`, in per-upload `sequence` order. Events
are counted by id (consumers de-duplicate by `ce_id`): a send the broker took
just before it died may be sent again, never lost.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from benchmarks.faults import FaultOutcome, Load, broker_outage
from infra.env import MiB
from ingest.settings import IngestSettings

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(autouse=True)
def needs_java() -> None:
    if shutil.which("java") is None:
        pytest.skip("a private broker needs Java")


def check(outcome: FaultOutcome, uploads: int) -> None:
    assert outcome.failed == {}
    assert outcome.answered == uploads + 1  # the load and the upload started in the outage
    assert outcome.answered_while_down == uploads + 1
    assert outcome.lost_events == 0, outcome
    assert outcome.out_of_order_uploads == 0, outcome


async def test_uploads_are_answered_while_kafka_is_dead_and_no_event_is_lost(
    settings: IngestSettings, tmp_path: Path
) -> None:
    uploads = 20
    outcome = await broker_outage(
        settings, Load(uploads, 6 * MiB, 5.0), outage=12.0, workdir=tmp_path
    )
    check(outcome, uploads)
    # A record per event and per state change at most, never one per retry.
    assert outcome.log_lines_while_down < 200, outcome


async def test_a_journal_left_by_a_killed_instance_is_sent_by_the_next(
    settings: IngestSettings, tmp_path: Path
) -> None:
    uploads = 4
    outcome = await broker_outage(
        settings,
        Load(uploads, 6 * MiB, 3.0),
        outage=10.0,
        workdir=tmp_path,
        stop_ingest=signal.SIGKILL,
    )
    check(outcome, uploads)


async def test_sigterm_with_the_broker_down_exits_within_the_grace_and_keeps_the_journal(
    settings: IngestSettings, tmp_path: Path
) -> None:
    uploads = 3
    outcome = await broker_outage(
        settings,
        Load(uploads, 2 * MiB, 2.0),
        outage=8.0,
        workdir=tmp_path,
        stop_ingest=signal.SIGTERM,
        shutdown_grace=6.0,
    )
    check(outcome, uploads)
    # The uploads were over: the journal had a third of the grace, then it stayed on disk
    # (Kafka's own producer and reader each stop within their bounds too).
    assert outcome.ingest_stop_seconds is not None
    assert outcome.ingest_stop_seconds < 6.0 + 10, outcome
