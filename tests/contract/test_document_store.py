"""DocumentStore: the local-disk store and S3 (MinIO) conditional writes answer alike."""

from __future__ import annotations

import asyncio

import pytest

from ingest.errors import VersionConflict
from ingest.ports import DocumentStore


async def test_documents_are_created_read_and_replaced_by_version(
    document_store: DocumentStore,
) -> None:
    assert await document_store.read("sessions/s-1.json") is None
    first = await document_store.create("sessions/s-1.json", b'{"status": "active"}')

    read = await document_store.read("sessions/s-1.json")
    assert read is not None
    assert (read.data, read.version) == (b'{"status": "active"}', first)

    with pytest.raises(VersionConflict) as created_twice:
        await document_store.create("sessions/s-1.json", b'{"status": "other"}')
    assert created_twice.value.retriable is True

    second = await document_store.replace(
        "sessions/s-1.json", b'{"status": "uploading"}', version=first
    )
    assert second != first
    with pytest.raises(VersionConflict) as stale:
        await document_store.replace("sessions/s-1.json", b'{"status": "failed"}', version=first)
    assert stale.value.retriable is True
    with pytest.raises(VersionConflict):
        await document_store.replace("sessions/never-created.json", b"{}", version=second)

    final = await document_store.read("sessions/s-1.json")
    assert final is not None
    assert (final.data, final.version) == (b'{"status": "uploading"}', second)


async def test_of_concurrent_replaces_of_one_version_exactly_one_wins(
    document_store: DocumentStore,
) -> None:
    version = await document_store.create("raced", b'{"owner": null}')

    async def replace(writer: int) -> str | None:
        try:
            return await document_store.replace("raced", b'{"owner": %d}' % writer, version=version)
        except VersionConflict:
            return None

    results = await asyncio.gather(*(replace(writer) for writer in range(8)))
    winners = [writer for writer, result in enumerate(results) if result is not None]
    assert len(winners) == 1
    stored = await document_store.read("raced")
    assert stored is not None
    assert stored.data == b'{"owner": %d}' % winners[0]
    assert stored.version == results[winners[0]]


async def test_of_concurrent_creates_of_one_key_exactly_one_wins(
    document_store: DocumentStore,
) -> None:
    async def create(writer: int) -> str | None:
        try:
            return await document_store.create("created", b'{"by": %d}' % writer)
        except VersionConflict:
            return None

    results = await asyncio.gather(*(create(writer) for writer in range(8)))
    winners = [writer for writer, result in enumerate(results) if result is not None]
    assert len(winners) == 1
    stored = await document_store.read("created")
    assert stored is not None
    assert (stored.data, stored.version) == (b'{"by": %d}' % winners[0], results[winners[0]])


async def test_list_keys_matches_any_prefix_of_the_key(document_store: DocumentStore) -> None:
    for key in ["users/u1/a", "users/u1/b", "users/u10/c", "users/u2/d", "sessions/x.json"]:
        await document_store.create(key, b"")

    assert await document_store.list_keys("users/u1/") == ["users/u1/a", "users/u1/b"]
    assert await document_store.list_keys("users/u1") == ["users/u1/a", "users/u1/b", "users/u10/c"]
    assert await document_store.list_keys("users/") == [
        "users/u1/a",
        "users/u1/b",
        "users/u10/c",
        "users/u2/d",
    ]
    assert await document_store.list_keys("sess") == ["sessions/x.json"]
    assert await document_store.list_keys("users/u3/") == []
    assert await document_store.list_keys("nothing") == []


async def test_an_empty_document_round_trips(document_store: DocumentStore) -> None:
    version = await document_store.create("users/u1/marker", b"")
    stored = await document_store.read("users/u1/marker")
    assert stored is not None
    assert (stored.data, stored.version) == (b"", version)


async def test_a_deleted_document_is_gone_and_its_key_free_again(
    document_store: DocumentStore,
) -> None:
    await document_store.create("cancels/i-1/s-1", b"")
    await document_store.create("cancels/i-1/s-2", b"")

    await document_store.delete("cancels/i-1/s-1")

    assert await document_store.read("cancels/i-1/s-1") is None
    assert await document_store.list_keys("cancels/i-1/") == ["cancels/i-1/s-2"]
    # Deleting what is not there is no error, and a deleted key can be created again.
    await document_store.delete("cancels/i-1/s-1")
    await document_store.delete("cancels/never/created")
    await document_store.create("cancels/i-1/s-1", b"again")
    again = await document_store.read("cancels/i-1/s-1")
    assert again is not None
    assert again.data == b"again"
