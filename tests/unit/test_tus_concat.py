"""The tus concatenation extension against the in-memory fakes: pieces uploaded apart, one file.

Partial uploads are uploads without events or a quota count of their own; a
final upload joins them by copying inside the store, is one upload with one
`upload.started` and one `upload.completed`, and consumes them. What may not
be joined is refused before anything changes.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ingest.errors import StorageError
from ingest.usecases.tus.concat import JoinLimits
from schemas import UploadCancelled, UploadCompleted, UploadFailed, UploadStarted
from tests.fakes import video_bytes
from tests.unit.test_tus_support import (
    PART,
    ClientFactory,
    Instance,
    TusRig,
    auth,
    metadata_header,
    patch_headers,
    send,
)

Client = TestClient[Any, Any]


@pytest.fixture
def rig() -> TusRig:
    return TusRig()


@pytest.fixture
async def nodes(rig: TusRig, aiohttp_client: ClientFactory) -> tuple[Instance, Instance]:
    return await rig.instance(aiohttp_client, "a"), await rig.instance(aiohttp_client, "b")


async def create_partial(client: Client, length: int, user: str = "ann") -> str:
    response = await client.post(
        "/v1/tus/", headers=auth(user, **{"Upload-Length": str(length), "Upload-Concat": "partial"})
    )
    assert response.status == 201, await response.text()
    assert response.headers["Upload-Concat"] == "partial"
    return response.headers["Location"]


async def upload_partials(
    nodes: tuple[Instance, Instance], pieces: list[bytes], user: str = "ann"
) -> list[str]:
    """Each piece as a partial upload, all sent at once through both instances; their URLs."""
    locations = [await create_partial(nodes[0].client, len(piece), user) for piece in pieces]

    async def one(index: int) -> None:
        client = nodes[index % 2].client
        upload_id = locations[index].rsplit("/", 1)[-1]
        response = await client.patch(
            f"/v1/tus/{upload_id}", data=pieces[index], headers=patch_headers(0, user)
        )
        assert response.status == 204, await response.text()

    await asyncio.gather(*(one(index) for index in range(len(pieces))))
    return locations


async def post_final(
    client: Client, references: list[str], user: str = "ann", **headers: str
) -> Any:
    meta = metadata_header(filename="joined.mp4", filetype="video/mp4")
    return await client.post(
        "/v1/tus/",
        headers=auth(
            user,
            **{"Upload-Concat": "final;" + " ".join(references), "Upload-Metadata": meta},
            **headers,
        ),
    )


def ids(locations: list[str]) -> list[str]:
    return [location.rsplit("/", 1)[-1] for location in locations]


def pieces_of(data: bytes, *sizes: int) -> list[bytes]:
    pieces, at = [], 0
    for size in sizes:
        pieces.append(data[at : at + size])
        at += size
    return pieces


async def test_partials_sent_at_once_join_into_one_upload_with_one_history(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    data = video_bytes(5 * PART + (6 * PART + 7) + 300, seed=1)
    pieces = pieces_of(data, 5 * PART, 6 * PART + 7, 300)
    locations = await upload_partials(nodes, pieces)
    head = await nodes[1].client.head(locations[0], headers=auth())
    assert head.headers["Upload-Concat"] == "partial"
    assert head.headers["Upload-Offset"] == str(5 * PART)

    # Absolute URLs, as tus-js-client sends them, and a path.
    references = [f"http://ingest.example{path}" for path in locations[:2]] + [locations[2]]
    response = await post_final(nodes[1].client, references)

    assert response.status == 201, await response.text()
    final_id = response.headers["Location"].rsplit("/", 1)[-1]
    session = await rig.session(final_id)
    assert session.status == "completed"
    assert session.result is not None
    assert session.result.sha256 == hashlib.sha256(data).hexdigest()
    assert session.result.size_bytes == len(data)
    assert session.filename == "joined.mp4"
    assert rig.store.objects[session.s3_key] == data
    assert rig.store.copied_bytes == len(data), "joined inside the store"

    events = rig.events(final_id)
    assert [type(e) for e in events] == [UploadStarted, UploadCompleted]
    completed = events[-1]
    assert isinstance(completed, UploadCompleted)
    assert (completed.size_bytes, completed.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert completed.format == "mp4"
    assert [e.upload_id for e in rig.sink.events if hasattr(e, "upload_id")] == [final_id] * 2

    for partial_id in ids(locations):
        partial = await rig.session(partial_id)
        assert partial.status == "completed"
        assert partial.message == f"joined into upload {final_id}"
    assert not [key for key in rig.store.objects if key.startswith("_ingest/tus/")]
    listed = await nodes[0].client.get("/v1/uploads", headers=auth())
    assert [s["session_id"] for s in (await listed.json())["sessions"]] == [final_id]

    final_head = await nodes[0].client.head(f"/v1/tus/{final_id}", headers=auth())
    assert final_head.headers["Upload-Concat"] == "final;" + " ".join(references)
    assert final_head.headers["Upload-Offset"] == final_head.headers["Upload-Length"]
    assert final_head.headers["Upload-Length"] == str(len(data))

    patch = await nodes[0].client.patch(
        f"/v1/tus/{final_id}", data=b"more", headers=patch_headers(len(data))
    )
    assert patch.status == 403
    assert (await patch.json())["error_code"] == "FINAL_UPLOAD_READ_ONLY"

    again = await post_final(nodes[0].client, locations)
    assert again.status == 400
    assert (await again.json())["error_code"] == "INVALID_CONCAT", "a partial is consumed"


async def test_the_final_counts_once_against_the_quota_and_partials_still_spend_it(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    rig.quota.set("ann", bytes_limit=12 * PART, uploads_limit=1)
    data = video_bytes(10 * PART, seed=2)
    locations = await upload_partials((nodes[0], nodes[0]), pieces_of(data, 5 * PART, 5 * PART))
    usage = nodes[0].tus.rules.usage("ann")
    assert (usage.bytes_used, usage.uploads_used) == (10 * PART, 0), "pieces are no uploads"

    over = await nodes[0].client.post(
        "/v1/tus/", headers=auth(**{"Upload-Length": str(3 * PART), "Upload-Concat": "partial"})
    )
    assert over.status == 429, "the pieces' bytes count"

    response = await post_final(nodes[0].client, locations)
    assert response.status == 201, await response.text()
    usage = nodes[0].tus.rules.usage("ann")
    assert (usage.bytes_used, usage.uploads_used) == (10 * PART, 1)
    completed = [e for e in rig.sink.events if isinstance(e, UploadCompleted)]
    assert [e.size_bytes for e in completed] == [10 * PART]


async def test_unknown_and_foreign_partials_are_refused_alike(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    data = video_bytes(5 * PART, seed=3)
    (bobs,) = await upload_partials(nodes, [data], user="bob")
    (anns,) = await upload_partials(nodes, [data], user="ann")

    foreign = await post_final(nodes[0].client, [anns, bobs])
    unknown = await post_final(nodes[0].client, [anns, "/v1/tus/" + "0" * 32])
    nonsense = await post_final(nodes[0].client, [anns, "https://elsewhere.example/files/x"])

    for response in (foreign, unknown, nonsense):
        assert response.status == 404
        body = await response.json()
        assert body["error_code"] == "PARTIAL_UPLOAD_NOT_FOUND"
        assert body["error_message"].startswith("no upload of yours at ")
    assert "bob" not in (await foreign.text())
    assert (await rig.session(bobs.rsplit("/", 1)[-1])).state.joined_into is None
    assert rig.sink.events == []


async def test_an_unfinished_partial_is_refused_and_nothing_changes(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    data = video_bytes(10 * PART, seed=4)
    (done,) = await upload_partials(nodes, [data[: 5 * PART]])
    unfinished = await create_partial(nodes[0].client, 5 * PART)
    await send(nodes[0].client, unfinished.rsplit("/", 1)[-1], 0, data[5 * PART : 7 * PART])

    response = await post_final(nodes[0].client, [done, unfinished])

    assert response.status == 400
    body = await response.json()
    assert body["error_code"] == "PARTIAL_UPLOAD_NOT_FINISHED"
    assert body["details"]["offset"] == 2 * PART
    assert (await rig.session(done.rsplit("/", 1)[-1])).state.joined_into is None
    assert rig.sink.events == []
    await send(nodes[1].client, unfinished.rsplit("/", 1)[-1], 2 * PART, data[7 * PART :])
    assert (await post_final(nodes[1].client, [done, unfinished])).status == 201


async def test_a_small_partial_that_is_not_the_last_is_refused(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    data = video_bytes(8 * PART, seed=5)
    locations = await upload_partials(nodes, pieces_of(data, 3 * PART, 5 * PART))

    response = await post_final(nodes[0].client, locations)

    assert response.status == 400
    body = await response.json()
    assert body["error_code"] == "PARTIAL_UPLOAD_TOO_SMALL"
    assert body["details"] == {"partial": locations[0], "size": 3 * PART, "min": 4 * PART}
    assert rig.sink.events == []
    # The small one may be last.
    assert (await post_final(nodes[0].client, [locations[1]])).status == 415


async def test_a_final_with_a_length_or_a_piece_listed_twice_is_refused(
    nodes: tuple[Instance, Instance],
) -> None:
    (location,) = await upload_partials(nodes, [video_bytes(5 * PART, seed=6)])
    with_length = await post_final(nodes[0].client, [location], **{"Upload-Length": "5"})
    twice = await post_final(nodes[0].client, [location, location])
    malformed = await nodes[0].client.post("/v1/tus/", headers=auth(**{"Upload-Concat": "final;"}))
    for response in (with_length, twice, malformed):
        assert response.status == 400, await response.text()
        assert response.headers["Tus-Resumable"] == "1.0.0"


async def test_a_large_partial_is_copied_in_ranges(aiohttp_client: ClientFactory) -> None:
    rig = TusRig(join=JoinLimits(min_part=PART, max_part=3 * PART))
    nodes = (await rig.instance(aiohttp_client, "a"), await rig.instance(aiohttp_client, "b"))
    data = video_bytes(7 * PART + 5 + 10, seed=7)
    locations = await upload_partials(nodes, pieces_of(data, 7 * PART + 5, 10))

    response = await post_final(nodes[0].client, locations)

    assert response.status == 201, await response.text()
    session = await rig.session(response.headers["Location"].rsplit("/", 1)[-1])
    assert rig.store.objects[session.s3_key] == data
    (joined,) = rig.store.completed_uploads[-1:]
    # Three equal ranges of the piece over `max_part` (7173 bytes), then the last piece.
    assert [p.size for p in joined.completed_parts] == [2391, 2391, 2391, 10]


async def test_a_join_that_fails_fails_the_final_and_gives_the_partials_back(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    data = video_bytes(10 * PART, seed=8)
    locations = await upload_partials(nodes, pieces_of(data, 5 * PART, 5 * PART))
    rig.store.fail_parts[2] = StorageError("S3 answered 503")

    failed = await post_final(nodes[0].client, locations)

    assert failed.status == 502
    (final,) = [s for s in rig.store.uploads if s.key.startswith("dashboard-uploads/")]
    assert final.state == "aborted"
    events = rig.sink.events
    assert [type(e) for e in events] == [UploadStarted, UploadFailed]
    (started,) = rig.sink.of_type(UploadStarted)
    failed_id = started.upload_id
    assert (await rig.session(failed_id)).status == "failed"
    for partial_id in ids(locations):
        assert (await rig.session(partial_id)).state.joined_into is None

    rig.store.fail_parts.clear()
    joined = await post_final(nodes[1].client, locations)
    assert joined.status == 201
    session = await rig.session(joined.headers["Location"].rsplit("/", 1)[-1])
    assert rig.store.objects[session.s3_key] == data


async def test_partials_that_are_never_joined_expire_silently_and_leave_nothing(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    data = video_bytes(6 * PART, seed=9)
    (location,) = await upload_partials(nodes, [data])
    partial_id = location.rsplit("/", 1)[-1]
    assert rig.store.objects[f"_ingest/tus/{partial_id}/partial"] == data

    rig.clock.advance(3600.0 + 1)
    head = await nodes[0].client.head(location, headers=auth())

    assert head.status == 410
    assert (await rig.session(partial_id)).status == "expired"
    assert not [key for key in rig.store.objects if key.startswith("_ingest/tus/")]
    assert rig.store.open_uploads == []
    assert rig.sink.events == []


async def test_a_final_of_no_video_is_refused_before_anything_changes(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    locations = await upload_partials(nodes, [b"\x00" * 5 * PART, b"\x00" * 10])
    response = await post_final(nodes[0].client, locations)
    assert response.status == 415
    assert rig.sink.events == []
    for partial_id in ids(locations):
        assert (await rig.session(partial_id)).state.joined_into is None


async def test_the_sweep_closes_joined_partials_and_expires_unjoined_ones_silently(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    from tests.unit.sweep.support import open_entries, sweeper

    data = video_bytes(10 * PART, seed=10)
    joined = await upload_partials(nodes, pieces_of(data, 5 * PART, 5 * PART))
    (left,) = await upload_partials(nodes, [data[: 5 * PART]])
    left_id = left.rsplit("/", 1)[-1]
    final = await post_final(nodes[0].client, joined)
    assert final.status == 201
    events = list(rig.sink.events)

    report = await sweeper(rig).sweep()
    assert report.expired == report.tus_cleaned == []
    assert open_entries(rig) == {left_id}, "joined ones are closed, the waiting one is kept"
    assert f"_ingest/tus/{left_id}/partial" in rig.store.objects

    rig.clock.advance(3600.0 + 1)
    report = await sweeper(rig).sweep()
    assert (report.expired, report.tus_cleaned) == ([left_id], [left_id])
    assert open_entries(rig) == set()
    assert not [key for key in rig.store.objects if key.startswith("_ingest/tus/")]
    assert rig.sink.events == events, "the pieces never emit anything"


async def joining_held_at_the_gate(
    rig: TusRig, nodes: tuple[Instance, Instance], *, seed: int
) -> tuple[list[str], asyncio.Task[Any], str]:
    """Two partials uploaded and their final posted on the first node, its copies held by
    the store's gate: (the partials' locations, the final's request, the final's id)."""
    data = video_bytes(10 * PART, seed=seed)
    locations = await upload_partials(nodes, pieces_of(data, 5 * PART, 5 * PART))
    rig.store.gate = asyncio.Event()
    posting = asyncio.create_task(post_final(nodes[0].client, locations))
    async with asyncio.timeout(5):
        while not rig.sink.events:
            await asyncio.sleep(0.01)
    (started,) = rig.sink.of_type(UploadStarted)
    return locations, posting, started.upload_id


async def test_a_final_deleted_while_joining_is_cancelled_and_its_partials_kept(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    locations, posting, final_id = await joining_held_at_the_gate(rig, nodes, seed=11)

    claimed = await nodes[1].client.delete(locations[0], headers=auth())
    assert claimed.status == 409, "a partial being joined cannot be terminated"
    head = await nodes[1].client.head(f"/v1/tus/{final_id}", headers=auth())
    assert head.status == 200
    assert "Upload-Offset" not in head.headers, "no offset before the join is done"
    deleted = await nodes[1].client.delete(f"/v1/tus/{final_id}", headers=auth())
    assert deleted.status == 204
    response = await posting
    assert rig.store.gate is not None
    rig.store.gate.set()

    assert response.status == 410, await response.text()
    assert [type(e) for e in rig.sink.events] == [UploadStarted, UploadCancelled]
    (final,) = [u for u in rig.store.uploads if u.key.startswith("dashboard-uploads/")]
    assert final.state == "aborted"
    for partial_id in ids(locations):
        partial = await rig.session(partial_id)
        assert (partial.status, partial.state.joined_into) == ("uploading", None)
    assert (await post_final(nodes[1].client, locations)).status == 201


async def test_a_shutdown_while_joining_fails_the_final_and_keeps_its_partials(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    locations, posting, _ = await joining_held_at_the_gate(rig, nodes, seed=12)

    assert await nodes[0].services.active.drain(0.05) == 1
    response = await posting

    assert response.status == 503, await response.text()
    assert [type(e) for e in rig.sink.events] == [UploadStarted, UploadFailed]
    assert rig.store.open_uploads == []
    for partial_id in ids(locations):
        assert (await rig.session(partial_id)).state.joined_into is None
    assert rig.store.gate is not None
    rig.store.gate.set()
    assert (await post_final(nodes[1].client, locations)).status == 201


def test_upload_concat_is_parsed_and_urls_name_upload_ids() -> None:
    from ingest.errors import InvalidRequest
    from ingest.usecases.tus.protocol import parse_concat, upload_id_of

    upload_id = "0123456789abcdef0123456789abcdef"
    assert parse_concat(None) is None
    assert parse_concat(" partial ") is not None
    final = parse_concat(f"final;/v1/tus/{upload_id}  https://h.example/api/v1/tus/{upload_id}/")
    assert final is not None
    assert final.is_final
    assert final.header == f"final;/v1/tus/{upload_id} https://h.example/api/v1/tus/{upload_id}/"
    assert [upload_id_of(reference) for reference in final.references] == [upload_id] * 2
    assert upload_id_of(f"/v1/uploads/{upload_id}") == upload_id
    for name in (
        "/files/" + upload_id,
        f"/v1/tus/{upload_id}x",
        "/v1/tus/",
        "?/v1/tus/" + upload_id,
    ):
        assert upload_id_of(name) is None, name
    for value in ("final;", "final", "partial;x", "whole", "final;a\tb\x01"):
        with pytest.raises(InvalidRequest):
            parse_concat(value)
