"""Cancels relayed between instances through marker documents (in-memory document store)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest

from infra import layout
from ingest.errors import ServiceUnavailable
from ingest.model import UploadSession
from ingest.usecases.cancels import CancelRelay
from tests.fakes import MemoryDocumentStore

POLL = 0.01


class Streaming:
    """The uploads an instance streams, as the relay's `stop_upload` sees them."""

    def __init__(self, *session_ids: str) -> None:
        self.running = set(session_ids)
        self.stopped: list[str] = []

    def __call__(self, session_id: str) -> bool:
        if session_id not in self.running:
            return False
        self.running.discard(session_id)
        self.stopped.append(session_id)
        return True


def _session(session_id: str, streamer: str | None) -> UploadSession:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return UploadSession(
        session_id=session_id,
        user_id="ann",
        filename="clip.mp4",
        expected_file_size=None,
        file_format="mp4",
        file_hash=None,
        auto_analyze=False,
        priority=0,
        metadata={},
        dashboard_context=None,
        protocol="stream",
        s3_key=f"uploads/{session_id}",
        created_at=now,
        expires_at=now,
        status="cancelled",
        instance_id=streamer,
    )


@pytest.fixture
def documents() -> MemoryDocumentStore:
    return MemoryDocumentStore()


def _relay(documents: MemoryDocumentStore, instance_id: str) -> CancelRelay:
    return CancelRelay(documents, instance_id=instance_id, poll_seconds=POLL)


@contextlib.asynccontextmanager
async def _running(relay: CancelRelay, streaming: Streaming) -> AsyncIterator[None]:
    task = asyncio.create_task(relay.run(streaming))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(2.0):
        while not condition():
            await asyncio.sleep(POLL / 2)


async def test_a_cancel_taken_elsewhere_stops_the_upload_where_it_streams(
    documents: MemoryDocumentStore,
) -> None:
    streaming_on_a = Streaming("s-1", "s-2")
    async with _running(_relay(documents, "a"), streaming_on_a):
        await _relay(documents, "b").forward(_session("s-1", streamer="a"))
        await _until(lambda: streaming_on_a.stopped == ["s-1"])
        await _until(lambda: documents.snapshot() == {})
    assert streaming_on_a.running == {"s-2"}


async def test_nothing_is_sent_for_an_upload_streaming_here_or_not_streaming_at_all(
    documents: MemoryDocumentStore,
) -> None:
    relay = _relay(documents, "a")
    await relay.forward(_session("s-1", streamer="a"))  # the caller stops it itself
    await relay.forward(_session("s-2", streamer=None))  # never claimed: nothing streams
    assert documents.snapshot() == {}


async def test_a_repeated_cancel_sends_one_marker(documents: MemoryDocumentStore) -> None:
    relay = _relay(documents, "b")
    await relay.forward(_session("s-1", streamer="a"))
    await relay.forward(_session("s-1", streamer="a"))
    assert list(documents.snapshot()) == [layout.cancel_marker("a", "s-1")]


async def test_only_the_instance_named_in_the_session_acts_on_its_marker(
    documents: MemoryDocumentStore,
) -> None:
    on_a, on_c = Streaming("s-1"), Streaming("s-1")
    async with _running(_relay(documents, "a"), on_a), _running(_relay(documents, "c"), on_c):
        await _relay(documents, "b").forward(_session("s-1", streamer="a"))
        await _until(lambda: on_a.stopped == ["s-1"])
        await asyncio.sleep(5 * POLL)
    assert on_c.stopped == []


async def test_a_marker_waits_one_round_for_its_upload_then_is_dropped(
    documents: MemoryDocumentStore,
) -> None:
    relay = _relay(documents, "a")
    streaming = Streaming()
    await _relay(documents, "b").forward(_session("late", streamer="a"))
    await _relay(documents, "b").forward(_session("gone", streamer="a"))

    # First look: neither upload is here yet; both markers are kept.
    kept = await relay._deliver(streaming, set())
    assert kept == {layout.cancel_marker("a", "late"), layout.cancel_marker("a", "gone")}
    # The claimed upload registers in the meantime and is stopped on the second look;
    # the other never comes (it had ended), and its marker goes.
    streaming.running.add("late")
    assert await relay._deliver(streaming, kept) == set()
    assert streaming.stopped == ["late"]
    assert documents.snapshot() == {}


async def test_a_failed_look_is_retried(
    documents: MemoryDocumentStore, caplog: pytest.LogCaptureFixture
) -> None:
    streaming = Streaming("s-1")
    await _relay(documents, "b").forward(_session("s-1", streamer="a"))
    documents.fail_with = ServiceUnavailable("S3 is unreachable")
    async with _running(_relay(documents, "a"), streaming):
        await _until(lambda: "cannot look for cancelled uploads" in caplog.text)
        assert streaming.stopped == []
        documents.fail_with = None
        await _until(lambda: streaming.stopped == ["s-1"])
