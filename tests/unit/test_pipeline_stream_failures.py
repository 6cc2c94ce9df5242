"""stream_upload when things go wrong: every failure aborts, reports once, and re-raises."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from ingest.errors import (
    ChecksumMismatch,
    ClientDisconnected,
    EventDeliveryError,
    IncompleteBody,
    QuotaExceeded,
    StorageError,
    TooLarge,
    TooSmall,
    UploadTimeout,
)
from ingest.model import UploadResult
from ingest.pipeline.budget import MemoryBudget
from ingest.pipeline.config import PipelineConfig
from schemas import (
    UploadCancelled,
    UploadCompleted,
    UploadEvent,
    UploadFailed,
    UploadStarted,
)
from tests.fakes import (
    MemoryObjectStore,
    ScriptedBody,
    video_bytes,
)
from tests.unit.pipeline_rig import PART, PipelineRig, make_target


@dataclass
class Rig(PipelineRig):
    config: PipelineConfig = field(
        default_factory=lambda: PipelineConfig(
            part_size=PART, parts_in_flight=3, progress_interval=60
        )
    )
    first_sequence: int = 3

    def assert_cleaned_up(self) -> None:
        """Aborted, nothing stored or held, and the events end with one terminal event."""
        upload = self.only_upload()
        assert upload.state == "aborted"
        assert upload.abort_calls == 1
        assert self.store.parts_held() == 0
        assert self.store.objects == {}
        assert self.budget.in_use == 0
        assert self.budget.waiting == 0
        self.assert_one_terminal_event()

    def assert_one_terminal_event(self) -> None:
        events = self.sink.events
        terminal = [e for e in events if isinstance(e, UploadFailed | UploadCancelled)]
        assert len(terminal) == 1
        assert events[-1] is terminal[0]
        assert not self.sink.of_type(UploadCompleted)
        sequences = [e.sequence for e in events if isinstance(e, UploadEvent)]
        assert sequences == list(range(3, 3 + len(events)))

    def failure(self) -> UploadFailed:
        last = self.sink.events[-1]
        assert isinstance(last, UploadFailed)
        return last


@pytest.fixture
def rig() -> Rig:
    return Rig()


async def _until(condition: Any, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.001)


# Limits.


async def test_too_large_without_a_declared_size_stops_mid_stream(rig: Rig) -> None:
    body = ScriptedBody(video_bytes(50_000), 100)
    with pytest.raises(TooLarge):
        await rig.run(make_target(max_size=1_000), body)
    assert body.sent == 1_100  # refused on the chunk that passed the maximum
    rig.assert_cleaned_up()
    failed = rig.failure()
    assert (failed.error_code, failed.bytes_received) == ("TOO_LARGE", 1_100)


async def test_too_large_for_the_declared_size_stops_mid_stream(rig: Rig) -> None:
    body = ScriptedBody(video_bytes(50_000), 100)
    with pytest.raises(TooLarge) as refused:
        await rig.run(make_target(declared_size=1_000), body)
    assert refused.value.details["declared_size"] == 1_000
    assert body.sent == 1_100
    rig.assert_cleaned_up()
    assert rig.failure().error_code == "TOO_LARGE"


async def test_a_declared_size_over_the_maximum_is_refused_before_reading(rig: Rig) -> None:
    body = ScriptedBody(video_bytes(5_000))
    with pytest.raises(TooLarge):
        await rig.run(make_target(declared_size=10**9), body)
    assert not body.started
    assert rig.store.uploads == []
    rig.assert_one_terminal_event()
    assert rig.failure().error_code == "TOO_LARGE"


async def test_quota_passed_while_streaming(rig: Rig) -> None:
    body = ScriptedBody(video_bytes(5_000), 100)
    with pytest.raises(QuotaExceeded):
        await rig.run(make_target(quota_bytes_remaining=1_000), body)
    assert body.sent == 1_100
    rig.assert_cleaned_up()
    assert rig.failure().error_code == "QUOTA_EXCEEDED"


async def test_a_body_shorter_than_declared_is_incomplete(rig: Rig) -> None:
    with pytest.raises(IncompleteBody):
        await rig.run(make_target(declared_size=1_000), ScriptedBody(video_bytes(900)))
    rig.assert_cleaned_up()
    assert rig.failure().error_code == "CLIENT_DISCONNECTED"


async def test_a_body_under_the_minimum_is_too_small(rig: Rig) -> None:
    with pytest.raises(TooSmall):
        await rig.run(make_target(min_size=1_024), ScriptedBody(video_bytes(500)))
    rig.assert_cleaned_up()


async def test_an_empty_body_is_too_small_before_any_upload_exists(rig: Rig) -> None:
    with pytest.raises(TooSmall):
        await rig.run(make_target(min_size=1), ScriptedBody(b""))
    assert rig.store.uploads == []
    rig.assert_one_terminal_event()


# The client.


@pytest.mark.parametrize(
    "failure",
    [
        ConnectionResetError("reset by peer"),
        asyncio.IncompleteReadError(b"", 100),
        OSError("broken pipe"),
        ValueError("malformed chunked encoding"),
    ],
)
async def test_a_client_that_goes_away_mid_stream(rig: Rig, failure: Exception) -> None:
    body = ScriptedBody(video_bytes(5 * PART + 7), 50, then=failure)
    with pytest.raises(ClientDisconnected) as gone:
        await rig.run(make_target(), body)
    assert gone.value.__cause__ is failure
    rig.assert_cleaned_up()
    failed = rig.failure()
    assert (failed.error_code, failed.bytes_received) == ("CLIENT_DISCONNECTED", 5 * PART + 7)


async def test_a_client_read_timeout(rig: Rig) -> None:
    with pytest.raises(UploadTimeout):
        await rig.run(make_target(), ScriptedBody(video_bytes(300), then=TimeoutError()))
    rig.assert_cleaned_up()
    assert rig.failure().error_code == "TIMEOUT"


# Storage.


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (StorageError("S3 answered 503"), "STORAGE_ERROR"),
        (ChecksumMismatch("part corrupted in transit"), "CHECKSUM_MISMATCH"),
        (RuntimeError("bug in an adapter"), "INTERNAL"),
    ],
)
async def test_a_failing_part_upload(rig: Rig, error: Exception, code: str) -> None:
    rig.store.fail_parts[3] = error
    with pytest.raises(type(error)) as raised:
        await rig.run(make_target(), ScriptedBody(video_bytes(10 * PART), 30))
    assert raised.value is error
    rig.assert_cleaned_up()
    assert rig.failure().error_code == code


async def test_a_failed_part_stops_a_slow_body_at_its_next_chunk(rig: Rig) -> None:
    rig.store.fail_parts[1] = StorageError("bucket gone")
    body = ScriptedBody(video_bytes(100 * PART), 2, delay=0.002)
    with pytest.raises(StorageError):
        await rig.run(make_target(), body)
    # Part 1 fails at once: the body is given up a few chunks later, while part 2 is
    # still arriving (32 chunks, 64 ms), not when part 2 is complete.
    assert PART < body.sent < 2 * PART
    rig.assert_cleaned_up()


async def test_failing_to_start_the_multipart_upload(rig: Rig) -> None:
    rig.store.fail_start = StorageError("access denied")
    with pytest.raises(StorageError, match="access denied"):
        await rig.run(make_target(), ScriptedBody(video_bytes(500)))
    assert rig.store.uploads == []
    assert rig.sink.types() == ["ingest.upload.started", "ingest.upload.failed"]
    assert rig.failure().error_code == "STORAGE_ERROR"
    assert rig.budget.in_use == 0


async def test_failing_to_complete(rig: Rig) -> None:
    rig.store.fail_complete = StorageError("InternalError")
    with pytest.raises(StorageError):
        await rig.run(make_target(), ScriptedBody(video_bytes(500)))
    rig.assert_cleaned_up()


# Cancellation.


async def _start_and_stall(rig: Rig) -> tuple[asyncio.Task[UploadResult], ScriptedBody]:
    body = ScriptedBody(video_bytes(3 * PART), 40, stall=True)
    task = asyncio.create_task(rig.run(make_target(), body))
    await _until(lambda: body.stalled.is_set() and len(rig.store.uploads[0].parts) == 3)
    return task, body


async def test_cancel_by_the_user(rig: Rig) -> None:
    task, _ = await _start_and_stall(rig)
    rig.interrupt.cancel(task, "cancelled", "user pressed stop")
    with pytest.raises(asyncio.CancelledError):
        await task
    rig.assert_cleaned_up()
    cancelled = rig.sink.events[-1]
    assert isinstance(cancelled, UploadCancelled)
    assert (cancelled.reason, cancelled.bytes_received) == ("user pressed stop", 3 * PART)


async def test_cancel_for_shutdown(rig: Rig) -> None:
    task, _ = await _start_and_stall(rig)
    rig.interrupt.reason = "shutdown"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rig.assert_cleaned_up()
    failed = rig.failure()
    assert (failed.error_code, failed.error_message) == ("INTERNAL", "server shutting down")


async def test_cancel_without_a_reason(rig: Rig) -> None:
    task, _ = await _start_and_stall(rig)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rig.assert_cleaned_up()
    assert rig.failure().error_code == "CANCELLED"


async def test_cancel_while_parts_are_uploading_and_the_budget_is_full() -> None:
    store = MemoryObjectStore()
    store.gate = asyncio.Event()  # parts never finish
    rig = Rig(store=store, budget=MemoryBudget(2 * PART))
    body = ScriptedBody(video_bytes(20 * PART), PART)
    task = asyncio.create_task(rig.run(make_target(), body))
    await _until(lambda: rig.budget.waiting == 1)
    rig.interrupt.cancel(task, "cancelled")
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.parts_in_flight == 0
    rig.assert_cleaned_up()


async def test_the_abort_survives_a_second_cancel(rig: Rig) -> None:
    rig.store.abort_delay = 0.1
    task, _ = await _start_and_stall(rig)
    rig.interrupt.cancel(task, "cancelled")
    await _until(lambda: rig.only_upload().abort_calls == 1)
    task.cancel()  # e.g. the server's shutdown grace ran out
    with pytest.raises(asyncio.CancelledError):
        await task
    # The task did not end before its abort did.
    assert rig.only_upload().state == "aborted"
    rig.assert_cleaned_up()


async def test_a_cancel_during_the_cleanup_of_an_error_is_not_swallowed(rig: Rig) -> None:
    rig.store.abort_delay = 0.1
    rig.store.fail_parts[2] = StorageError("503")
    body = ScriptedBody(video_bytes(5 * PART), PART, stall=True)
    task = asyncio.create_task(rig.run(make_target(), body))
    await _until(lambda: rig.store.uploads and rig.only_upload().abort_calls == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError) as cancelled:
        await task
    assert isinstance(cancelled.value.__cause__, StorageError)
    rig.assert_cleaned_up()
    assert rig.failure().error_code == "STORAGE_ERROR"


# Reporting the failure.


async def test_a_failure_to_report_the_failure_does_not_hide_it(rig: Rig) -> None:
    rig.store.fail_parts[1] = StorageError("503")
    rig.sink.fail_with = EventDeliveryError("broker and spool both unavailable")
    rig.sink.fail_types = (UploadFailed,)
    with pytest.raises(StorageError):
        await rig.run(make_target(), ScriptedBody(video_bytes(500)))
    assert rig.only_upload().state == "aborted"
    assert [type(e) for e in rig.sink.refused] == [UploadFailed]


async def test_reporting_the_failure_is_bounded_in_time() -> None:
    rig = Rig(
        config=PipelineConfig(
            part_size=PART, parts_in_flight=2, progress_interval=60, event_timeout=0.05
        )
    )
    rig.store.fail_parts[1] = StorageError("503")
    rig.sink.delay = 30
    rig.sink.delay_types = (UploadFailed,)
    async with asyncio.timeout(2):
        with pytest.raises(StorageError):
            await rig.run(make_target(), ScriptedBody(video_bytes(500)))
    assert rig.only_upload().state == "aborted"
    assert not rig.sink.of_type(UploadFailed)


async def test_aborting_is_bounded_in_time_and_its_failure_is_not_raised() -> None:
    rig = Rig(
        config=PipelineConfig(
            part_size=PART, parts_in_flight=2, progress_interval=60, abort_timeout=0.05
        )
    )
    rig.store.fail_parts[1] = StorageError("503")
    rig.store.abort_delay = 30
    async with asyncio.timeout(2):
        with pytest.raises(StorageError, match="503"):
            await rig.run(make_target(), ScriptedBody(video_bytes(500)))
    assert rig.failure().error_code == "STORAGE_ERROR"

    rig = Rig()
    rig.store.fail_parts[1] = StorageError("503")
    rig.store.fail_abort = StorageError("abort refused")
    with pytest.raises(StorageError, match="503"):
        await rig.run(make_target(), ScriptedBody(video_bytes(500)))
    assert rig.failure().error_code == "STORAGE_ERROR"


async def test_an_upload_that_cannot_be_announced_fails_and_keeps_nothing(rig: Rig) -> None:
    rig.sink.fail_with = EventDeliveryError("spool full")
    rig.sink.fail_types = (UploadStarted,)
    with pytest.raises(EventDeliveryError):
        await rig.run(make_target(), ScriptedBody(video_bytes(500)))
    # The body was being stored while the started event was sent: all of it is aborted.
    assert rig.store.completed_uploads == []
    assert rig.store.parts_held() == 0
    assert rig.store.objects == {}
    assert rig.failure().error_code == "INTERNAL"
    assert rig.sink.types() == ["ingest.upload.failed"]
    assert rig.budget.in_use == 0


async def test_a_file_of_one_part_whose_start_cannot_be_announced_is_removed(rig: Rig) -> None:
    rig.sink.fail_with = EventDeliveryError("spool full")
    rig.sink.fail_types = (UploadStarted,)
    with pytest.raises(EventDeliveryError):
        await rig.run(make_target(), ScriptedBody(video_bytes(PART // 2)))
    assert rig.store.put_attempts == ["dashboard-uploads/user-1/upl-1/clip.mp4"]
    assert rig.store.objects == {}
    assert rig.store.uploads == []
    assert rig.failure().error_code == "INTERNAL"
    assert not rig.sink.of_type(UploadCompleted)


async def test_budget_is_returned_when_concurrent_uploads_fail() -> None:
    store = MemoryObjectStore(part_delay=0.002)
    rig = Rig(store=store, budget=MemoryBudget(4 * PART))
    store.fail_parts[4] = StorageError("503")
    outcomes = await asyncio.gather(
        rig.run(make_target(upload_id="a", s3_key="k/a"), ScriptedBody(video_bytes(10 * PART))),
        rig.run(make_target(upload_id="b", s3_key="k/b"), ScriptedBody(video_bytes(2 * PART))),
        rig.run(
            make_target(upload_id="c", s3_key="k/c"),
            ScriptedBody(video_bytes(3 * PART + 10), then=ConnectionResetError()),
        ),
        return_exceptions=True,
    )
    assert [type(o) for o in outcomes] == [StorageError, UploadResult, ClientDisconnected]
    assert rig.budget.in_use == 0
    assert rig.budget.waiting == 0
    assert set(store.objects) == {"k/b"}
    assert store.parts_held() == 0


# A body stored by one PUT.


async def test_a_failed_put_leaves_nothing_and_reports_once(rig: Rig) -> None:
    rig.store.fail_put = StorageError("503 Slow Down")
    with pytest.raises(StorageError):
        await rig.run(make_target(), ScriptedBody(video_bytes(PART - 1), 10))
    assert rig.store.uploads == []
    assert rig.store.objects == {}
    assert rig.budget.in_use == 0
    rig.assert_one_terminal_event()
    assert rig.failure().error_code == "STORAGE_ERROR"


@pytest.mark.parametrize("put_succeeds", [True, False])
async def test_a_put_cut_short_by_a_cancel_is_waited_for_and_its_object_deleted(
    rig: Rig, put_succeeds: bool
) -> None:
    rig.store.gate = asyncio.Event()  # the PUT is in flight until the gate opens
    if not put_succeeds:
        rig.store.fail_put = StorageError("connection reset")
    target = make_target()
    task = asyncio.create_task(rig.run(target, ScriptedBody(video_bytes(PART - 1), 10)))
    await _until(lambda: rig.store.parts_in_flight == 1)
    rig.interrupt.cancel(task, "cancelled")
    await asyncio.sleep(0.01)
    assert not task.done()  # the clean-up waits for the PUT to end
    rig.store.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rig.store.put_attempts == [target.s3_key]
    assert rig.store.objects == {}
    assert rig.budget.in_use == 0
    rig.assert_one_terminal_event()
    assert isinstance(rig.sink.events[-1], UploadCancelled)
