"""The pieces of the tus package on their own: header parsing, the body valve, the part writer,
the off-loop digests."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
from collections.abc import AsyncIterator

import pytest

from ingest.errors import (
    ClientDisconnected,
    InvalidRequest,
    StorageError,
    UnsupportedProtocolVersion,
)
from ingest.pipeline.budget import MemoryBudget
from ingest.pipeline.parts import PartReader
from ingest.ports import MultipartUpload
from ingest.usecases.tus.body import EndOnFailure, Valve
from ingest.usecases.tus.checksum import OrderedDigest, sha256_of_object
from ingest.usecases.tus.protocol import (
    check_version,
    http_date,
    parse_checksum,
    parse_creation_length,
    parse_metadata,
)
from ingest.usecases.tus.writer import Layout, PartWriter, Written
from tests.fakes import MemoryMultipartUpload, MemoryObjectStore, ScriptedBody

P = 100


def test_metadata_is_parsed_strictly() -> None:
    encoded = base64.b64encode("clip é.mp4".encode()).decode()
    assert parse_metadata(f"filename {encoded},is_confidential, empty ") == {
        "filename": "clip é.mp4",
        "is_confidential": "",
        "empty": "",
    }
    assert parse_metadata(None) == {}
    for bad in ("a b,a c", "key not*base64", ",", "ké dGVzdA=="):
        with pytest.raises(InvalidRequest):
            parse_metadata(bad)


def test_checksum_length_and_version_headers() -> None:
    digest = hashlib.sha1(b"hello world").digest()
    checksum = parse_checksum(f"sha1 {base64.b64encode(digest).decode()}")
    assert checksum is not None
    assert (checksum.algorithm, checksum.digest) == ("sha1", digest)
    assert parse_checksum(None) is None
    for bad in ("crc32 AAAA", "sha256 " + base64.b64encode(digest).decode(), "sha1"):
        with pytest.raises(InvalidRequest):
            parse_checksum(bad)
    assert parse_creation_length("10", None) == 10
    assert parse_creation_length(None, "1") is None
    for length, defer in (("x", None), (None, None), (None, "0"), ("1", "1")):
        with pytest.raises(InvalidRequest):
            parse_creation_length(length, defer)
    check_version("1.0.0")
    with pytest.raises(UnsupportedProtocolVersion):
        check_version("1.0")


def test_upload_expires_is_an_http_date() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    moment = datetime(2014, 6, 25, 18, 0, tzinfo=timezone(timedelta(hours=2)))
    assert http_date(moment) == "Wed, 25 Jun 2014 16:00:00 GMT"
    assert http_date(datetime(2014, 6, 25, 16, 0, tzinfo=UTC)).endswith("GMT")


async def _forever(first: bytes) -> AsyncIterator[bytes]:
    yield first
    await asyncio.Event().wait()
    yield b"never"


async def test_a_closed_valve_ends_a_body_waiting_for_the_client() -> None:
    valve = Valve(_forever(b"abc"))
    assert await anext(valve) == b"abc"
    reading = asyncio.create_task(anext(valve))
    await asyncio.sleep(0.01)
    valve.close("released")
    with pytest.raises(StopAsyncIteration):
        await reading
    assert valve.reason == "released"
    with pytest.raises(StopAsyncIteration):
        await anext(valve)


async def test_a_cancel_that_is_not_the_valves_goes_through() -> None:
    valve = Valve(_forever(b"abc"))
    await anext(valve)
    reading = asyncio.create_task(anext(valve))
    await asyncio.sleep(0.01)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading


async def test_a_body_cut_short_ends_and_says_why() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"abc"
        raise ClientDisconnected("gone")

    body = EndOnFailure(broken())
    assert [chunk async for chunk in body] == [b"abc"]
    assert isinstance(body.error, ClientDisconnected)


async def _write(
    store: MemoryObjectStore, data: bytes, layout: Layout, chunk: int, tail: bytes = b""
) -> tuple[Written, MemoryMultipartUpload]:
    multipart = await store.start_multipart("k", content_type=None, metadata={})

    async def opened() -> MultipartUpload:
        return multipart

    async def stored(_: int) -> None:
        return None

    async def body() -> AsyncIterator[bytes]:
        if tail:
            yield tail
        async for piece in ScriptedBody(data, chunk=chunk).chunks():
            yield piece

    writer = PartWriter(
        layout,
        store=store,
        tail_key=lambda start, end: f"tail-{start}-{end}",
        budget=MemoryBudget(4 * P),
        parts_in_flight=2,
        open_multipart=opened,
        on_stored=stored,
    )
    return await writer.write(PartReader(body())), multipart


@pytest.mark.parametrize("chunk", [1, 7, P - 1, P, P + 1, 3 * P + 5])
async def test_parts_keep_their_size_whatever_the_chunks(chunk: int) -> None:
    store = MemoryObjectStore()
    data = random.Random(chunk).randbytes(5 * P + 42)
    written, multipart = await _write(store, data, Layout(P, 0, None), chunk)
    assert multipart.part_sizes == [P] * 5
    assert written.stored_through == 5 * P
    assert written.tail == data[5 * P :]
    assert store.objects[f"tail-{5 * P}-542"] == data[5 * P :]


async def test_a_patch_starting_mid_part_prepends_the_tail_and_ends_the_file() -> None:
    store = MemoryObjectStore()
    data = random.Random(1).randbytes(4 * P + 10)
    layout = Layout(P, 2 * P + 30, len(data))
    written, multipart = await _write(
        store, data[2 * P + 30 :], layout, chunk=33, tail=data[2 * P : 2 * P + 30]
    )
    assert sorted(multipart.parts) == [3, 4, 5]
    assert multipart.part_sizes == [P, P, 10]
    assert multipart.parts[3][1] == data[2 * P : 3 * P]
    assert written.end == len(data)
    assert written.tail_key is None


async def test_a_failed_part_keeps_the_parts_stored_before_it() -> None:
    store = MemoryObjectStore()
    store.fail_parts[3] = StorageError("503")
    data = random.Random(2).randbytes(6 * P)
    written, _ = await _write(store, data, Layout(P, 0, len(data)), chunk=P)
    assert isinstance(written.failure, StorageError)
    assert written.end == 2 * P


async def test_ordered_digest_matches_hashlib_and_the_stored_object_is_hashed_back() -> None:
    rng = random.Random(3)
    pieces = [rng.randbytes(rng.randint(0, 5000)) for _ in range(200)]
    for algorithm in ("sha1", "sha256", "md5"):
        digest = OrderedDigest(algorithm, batch_bytes=4096)
        for piece in pieces:
            await digest.feed(piece)
        assert await digest.digest() == hashlib.new(algorithm, b"".join(pieces)).digest()

    store = MemoryObjectStore()
    store.read_chunk = 777
    store.objects["obj"] = b"".join(pieces)
    assert await sha256_of_object(store, "obj") == (
        hashlib.sha256(b"".join(pieces)).hexdigest(),
        sum(map(len, pieces)),
    )
