"""The live service on the real Kafka: the WebSocket feed as users and admins see it.

Uploads go through real ingest instances (two of them, over the module's
topics and bucket); the feed is served by real replicas reading Kafka.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from consumers.fanout import cursor
from consumers.fanout.service import live_topics
from ingest.settings import IngestSettings
from schemas import Topics
from tests.integration.harness import RunningIngest, running_ingest
from tests.integration.live import (
    Message,
    create_session,
    ended,
    listen,
    metric,
    running_fanout,
    slow_reader,
    upload,
)
from tests.media import MiB

SIZE = 12 * MiB


def sequences(events: list[Message]) -> list[int]:
    return [m["data"]["sequence"] for m in events]


def assert_whole_upload(events: list[Message], user: str, result: dict[str, object]) -> None:
    """One upload's events, in order, from upload_started to an upload_complete of `result`."""
    assert {m["user_id"] for m in events} == {user}
    assert events[0]["event_type"] == "upload_started"
    assert events[-1]["event_type"] == "upload_complete"
    assert sequences(events) == list(range(len(events)))
    assert {m["event_type"] for m in events[1:-1]} == {"upload_progress"}
    complete = events[-1]["data"]
    assert complete["video_id"] == result["video_id"]
    assert complete["analysis_id"] == result["analysis_id"]
    assert complete["redirect_url"] == result["redirect_url"]
    assert complete["redirect_url"] == f"/dashboard/videos/{result['video_id']}/results"
    assert all(m["cursor"] for m in events)


async def test_each_user_sees_only_their_uploads_and_an_admin_sees_both(
    settings: IngestSettings, ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    async with running_ingest(settings) as second, running_fanout(settings) as fanout:
        alice = await listen(http, fanout.ws_url(), ingest.token("alice-live"))
        bob = await listen(http, fanout.ws_url(), ingest.token("bob-live"))
        admin = await listen(http, fanout.ws_url(), ingest.token("root", admin=True), all="true")
        for_alice = await create_session(http, ingest.url, ingest.auth("alice-live"), SIZE)
        for_bob = await create_session(http, second.url, second.auth("bob-live"), SIZE)
        of_alice, of_bob = for_alice["session_id"], for_bob["session_id"]
        alice_result, bob_result = await asyncio.gather(
            upload(http, ingest.url, for_alice, ingest.auth("alice-live"), SIZE, pause=0.05),
            upload(http, second.url, for_bob, second.auth("bob-live"), SIZE, seed=2, pause=0.05),
        )
        await alice.wait_for(ended(of_alice))
        await bob.wait_for(ended(of_bob))
        await admin.wait_for(lambda ms: ended(of_alice)(ms) and ended(of_bob)(ms))

        assert {m["session_id"] for m in alice.events()} == {of_alice}
        assert {m["session_id"] for m in bob.events()} == {of_bob}
        assert_whole_upload(alice.events(), "alice-live", alice_result)
        assert_whole_upload(bob.events(), "bob-live", bob_result)
        assert admin.events(of_alice) == alice.events()
        assert [m["data"] for m in admin.events(of_bob)] == [m["data"] for m in bob.events()]
        for listener in (alice, bob, admin):
            await listener.close()


async def test_the_admin_scope_and_the_token_are_checked_before_the_upgrade(
    settings: IngestSettings, ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    async with running_fanout(settings) as fanout:
        url = f"{fanout.url}/ws/upload-progress"
        for params, status, code in (
            ({}, 401, "UNAUTHORIZED"),
            ({"token": "not-a-token"}, 401, "UNAUTHORIZED"),
            ({"token": ingest.token("mallory"), "all": "true"}, 403, "FORBIDDEN"),
            ({"token": ingest.token("mallory"), "since": "!!"}, 400, "INVALID_CURSOR"),
        ):
            async with http.get(url, params=params) as response:
                body = await response.json()
                assert response.status == status, body
                assert body["error_code"] == code
                assert set(body) == {"error_code", "error_message", "details", "timestamp"}


async def test_a_client_that_stops_reading_is_closed_and_the_others_keep_receiving(
    settings: IngestSettings, ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    # Heartbeats every 10 ms fill the stalled client's small buffers within a second or two.
    async with running_fanout(
        settings,
        heartbeat_seconds=0.01,
        queue_size=32,
        send_buffer_bytes=4096,
        close_timeout_seconds=0.5,
    ) as fanout:
        auth = ingest.auth("carol-live")
        session = await create_session(http, ingest.url, auth, SIZE)
        sid = session["session_id"]
        path = f"/ws/upload-progress/{sid}?token={ingest.token('carol-live')}"
        async with slow_reader(fanout.port, path):
            steady = await listen(
                http, fanout.ws_url(f"/ws/upload-progress/{sid}"), ingest.token("carol-live")
            )
            result = await upload(http, ingest.url, session, auth, SIZE, pause=0.15)
            await steady.wait_for(ended(sid))
            async with asyncio.timeout(30):
                while await metric(http, fanout.url, "fanout_too_slow_total") < 1:
                    await asyncio.sleep(0.1)
            async with asyncio.timeout(30):
                while await metric(http, fanout.url, "fanout_connections") != 1:
                    await asyncio.sleep(0.1)
        assert_whole_upload(steady.events(), "carol-live", result)
        assert steady.close_code is None
        await steady.close()


async def test_the_sixth_connection_of_a_user_is_refused(
    settings: IngestSettings, ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    async with running_fanout(settings) as fanout:
        token = ingest.token("dave-live")
        five = [await listen(http, fanout.ws_url(), token) for _ in range(5)]
        sixth = await http.ws_connect(fanout.ws_url(), params={"token": token})
        closing = await sixth.receive(timeout=10)
        assert closing.type is aiohttp.WSMsgType.CLOSE
        assert sixth.close_code == 4429
        # Someone else is not counted against dave.
        other = await listen(http, fanout.ws_url(), ingest.token("erin-live"))
        await other.close()
        for listener in five:
            await listener.close()
        assert await metric(http, fanout.url, "fanout_refused_total") == 1


async def test_a_client_reconnecting_elsewhere_with_its_cursor_misses_nothing(
    settings: IngestSettings, ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    async with (
        running_ingest(settings) as second,
        running_fanout(settings) as first_replica,
        running_fanout(settings) as other_replica,
    ):
        token = ingest.token("frank-live")
        before = await listen(http, first_replica.ws_url(), token)
        session = await create_session(http, second.url, second.auth("frank-live"), 24 * MiB)
        sid = session["session_id"]
        uploading = asyncio.create_task(
            upload(http, second.url, session, second.auth("frank-live"), 24 * MiB, pause=0.12)
        )
        await before.wait_for(lambda ms: len([m for m in ms if m["session_id"] == sid]) >= 2)
        await before.close()
        last_cursor = before.messages[-1]["cursor"]
        await asyncio.sleep(1.0)  # the upload goes on meanwhile: these events are missed
        assert not uploading.done()
        after = await listen(http, other_replica.ws_url(), token, since=last_cursor)
        result = await uploading
        await after.wait_for(ended(sid))

        seen = before.events(sid) + after.events(sid)
        assert_whole_upload(seen, "frank-live", result)
        assert before.events(sid)
        assert len(after.events(sid)) >= 2
        # Some came from Kafka through the replay, not only from the live feed.
        assert await metric(http, other_replica.url, "fanout_replayed_messages_total") >= 1
        await after.close()


async def test_a_cursor_older_than_retention_gets_resync(
    settings: IngestSettings, ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    async with running_fanout(settings) as fanout:
        token = ingest.token("gina-live")
        session = await create_session(http, ingest.url, ingest.auth("gina-live"), SIZE)
        await upload(http, ingest.url, session, ingest.auth("gina-live"), SIZE)
        topics = live_topics(Topics(settings.topic_prefix))
        old = cursor.encode({}, topics)  # every partition at offset 0
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            uploads = Topics(settings.topic_prefix).uploads
            # -1: up to the end of each partition, as retention would after a long while.
            await admin.delete_records(
                {TopicPartition(uploads, n): RecordsToDelete(-1) for n in range(12)}
            )
        finally:
            await admin.close()
        late = await listen(http, fanout.ws_url(), token, since=old)
        await late.wait_for(lambda ms: any(m["event_type"] == "resync" for m in ms))
        assert not late.events()
        await late.close()


async def test_progress_polled_through_another_replica_follows_an_upload_on_another_instance(
    settings: IngestSettings, ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    async with (
        running_ingest(settings) as second,
        running_fanout(settings),
        running_fanout(settings) as replica,
    ):
        auth = second.auth("hana-live")
        session = await create_session(http, second.url, auth, 24 * MiB)
        sid = session["session_id"]
        uploading = asyncio.create_task(
            upload(http, second.url, session, auth, 24 * MiB, pause=0.1)
        )
        progress_url = f"{replica.url}/v1/uploads/{sid}/progress"
        samples: list[tuple[dict[str, object], int]] = []
        while not uploading.done():
            async with http.get(progress_url, headers=auth) as response:
                live = await response.json() if response.status == 200 else None
            async with http.get(f"{second.url}/v1/uploads/{sid}", headers=auth) as response:
                status = await response.json()
            if live is not None and live["status"] == "uploading":
                samples.append((live, status["bytes_received"]))
            await asyncio.sleep(0.2)
        result = await uploading
        assert samples, "the replica never showed the upload in progress"
        for live, received_then in samples:
            # The replica is at most a progress interval behind what the instance counted.
            assert 0 <= int(live["bytes_uploaded"]) <= received_then  # type: ignore[call-overload]
        assert any(received > 0 for _, received in samples)
        assert max(int(s["bytes_uploaded"]) for s, _ in samples) > 0  # type: ignore[call-overload]

        async with asyncio.timeout(10):
            while True:
                async with http.get(progress_url, headers=auth) as response:
                    final = await response.json()
                if final["status"] == "completed":
                    break
                await asyncio.sleep(0.1)
        assert final["video_id"] == result["video_id"]
        assert final["analysis_id"] == result["analysis_id"]
        assert final["redirect_url"] == result["redirect_url"]
        assert final["bytes_uploaded"] == final["total_bytes"] == 24 * MiB
        assert final["percentage"] == 100.0
        for name in ("started_at", "last_updated", "completed_at", "filename"):
            assert final[name]

        alias = f"{replica.url}/v1/dashboard/upload/progress/{sid}"
        async with http.get(alias, headers=auth) as response:
            assert response.status == 200
            assert (await response.json()) == final
        async with http.get(progress_url, headers=second.auth("ivan-live")) as response:
            assert response.status == 403
            assert (await response.json())["error_code"] == "FORBIDDEN"
        async with http.get(progress_url, headers=second.auth("root-admin")) as response:
            assert response.status == 403
        async with http.get(f"{replica.url}/v1/uploads/{'0' * 32}/progress", headers=auth) as r:
            assert r.status == 404
            assert (await r.json())["error_code"] == "UPLOAD_NOT_FOUND"
        async with http.get(progress_url, params={"token": second.token("hana-live")}) as r:
            assert r.status == 401
