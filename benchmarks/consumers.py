"""The consumers' figures (`python -m benchmarks consumers`): quota throughput and lag on the
real broker, and the detection's cost per minute of video (`benchmarks.detection`).

Each run uses fresh topics (`<prefix>consumers-<random>.`, deleted at the end)
and runs the quota consumer in this process as `ingest consume quota` runs it
(`cli.consume.run_consumer`: the runtime on a `KafkaGroupConsumer`, group
`quota`), with its snapshot sink watched. Two figures per run:

- **throughput**: `events` completed uploads of `users` users are published
  first; the clock starts when the consumer has its partitions (snapshots
  loaded) and stops when the snapshots it published reflect every upload:
  events per second, group join excluded.
- **lag**: the consumer still running, uploads are published at a steady
  `rate` per second for `seconds`; for each, the time from publishing it to
  the snapshot that first counts it (p50, p99, max), and the most uploads
  ever published but not yet reflected (sampled every 50 ms).

Then the detection's figures (`benchmarks.detection`: seconds of analysis per
minute of 720p video, videos per minute with the pool at its default size).
Figures are the median (min-max) of `runs` runs; the JSON goes to
`<out>/consumers[-label].json`. How it fails: RuntimeError when the snapshots
do not reflect every upload within the time limit, or when the consumer
stops with an error; the topics are deleted whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient

from benchmarks import detection
from benchmarks.context import Context
from benchmarks.environment import describe
from benchmarks.process import free_port
from benchmarks.report import describe_machine, print_table, write_result
from benchmarks.stats import Spread, percentile, spread
from cli.consume import run_consumer
from consumers.quota import QuotaApp, QuotaDefaults, QuotaLedger
from consumers.runtime.settings import ConsumerSettings
from infra.env import GiB
from infra.feeds import RecordHandler, TopicPartition, TopicReader
from infra.kafka.reader import KafkaTopicReader
from infra.kafka.sink import KafkaEventSink
from infra.provisioning import ensure_topics
from schemas import Event, QuotaUpdated, Topics, UploadCompleted

T = TypeVar("T")

# Every completion falls in one period, so each one is charged (see consumers.quota.ledger).
_AT = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)
_DEFAULTS = QuotaDefaults(bytes_limit=1024 * GiB, uploads_limit=1_000_000, period_days=30)


class _Watched:
    """The snapshot sink, noting when each upload is first reflected in a published snapshot."""

    def __init__(self, sink: KafkaEventSink) -> None:
        self.sink = sink
        self.reflected: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def emit(self, event: Event) -> None:
        await self.sink.emit(event)
        if isinstance(event, QuotaUpdated) and event.counted_uploads:
            # The ledger lists uploads in the order charged: the newest is last.
            self.reflected.setdefault(event.counted_uploads[-1].upload_id, time.monotonic())
            self.changed.set()

    async def until_reflected(self, upload_ids: set[str], within: float) -> float:
        """The moment the last of `upload_ids` was reflected."""
        try:
            async with asyncio.timeout(within):
                while not upload_ids <= self.reflected.keys():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            missing = len(upload_ids - self.reflected.keys())
            raise RuntimeError(
                f"consumers: {missing} uploads not reflected in a snapshot within {within:g} s"
            ) from None
        return max(self.reflected[upload_id] for upload_id in upload_ids)


class _TimedApp(QuotaApp):
    """The quota app, noting when it is ready (its partitions' snapshots loaded)."""

    assigned_at: float | None = None

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        await super().on_assigned(partitions)
        self.assigned_at = time.monotonic()


def _completion(number: int, users: int, tag: str) -> UploadCompleted:
    return UploadCompleted(
        upload_id=f"bench-{tag}-{number}",
        user_id=f"user-{tag}-{number % users}",
        video_id=f"video-{tag}-{number}",
        analysis_id=f"analysis-{tag}-{number}",
        etag=None,
        parts=1,
        filename="clip.mp4",
        content_type="video/mp4",
        size_bytes=1024 + number,
        total_bytes=1024 + number,
        sha256=f"{number:064x}",
        s3_bucket="bench",
        s3_key=f"videos/{tag}/{number}.mp4",
        format="mp4",
        protocol="dashboard",
        sequence=2,
        occurred_at=_AT,
        started_at=_AT,
        completed_at=_AT,
    )


async def _publish(sink: KafkaEventSink, events: list[UploadCompleted]) -> None:
    for start in range(0, len(events), 500):
        await asyncio.gather(*(sink.emit(event) for event in events[start : start + 500]))


async def one_run(
    ctx: Context, *, events: int, users: int, rate: float, seconds: float
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    prefix = f"{ctx.settings.topic_prefix}consumers-{tag}."
    topics = Topics(prefix)
    servers = ctx.settings.kafka_bootstrap_servers
    await ensure_topics(servers, topics)
    try:
        return await _measure(servers, topics, tag, events, users, rate, seconds)
    finally:
        await _delete_topics(servers, prefix)


async def _measure(
    servers: str, topics: Topics, tag: str, events: int, users: int, rate: float, seconds: float
) -> dict[str, Any]:
    settings = ConsumerSettings(
        kafka_bootstrap_servers=servers,
        topic_prefix=topics.prefix,
        metrics_port=free_port(),
        commit_interval_seconds=1.0,
        drain_seconds=5.0,
        instance_id=f"bench-{tag}",
    )

    def open_reader(topic: str, handler: RecordHandler) -> TopicReader:
        return KafkaTopicReader(servers, topic, handler)

    async with (
        KafkaEventSink(servers, topics, source="/bench/consumers") as inputs,
        KafkaEventSink(servers, topics, source=f"/consumer/quota/bench-{tag}") as snapshots,
    ):
        backlog = [_completion(n, users, tag) for n in range(events)]
        await _publish(inputs, backlog)
        watched = _Watched(snapshots)
        app = _TimedApp(topics, watched, open_reader, QuotaLedger(_DEFAULTS))
        stop = asyncio.Event()
        consumer = asyncio.create_task(run_consumer(app, settings, stop=stop))
        try:
            done = await _first_of(
                consumer, watched.until_reflected({e.upload_id for e in backlog}, 300)
            )
            assert app.assigned_at is not None
            elapsed = max(done - app.assigned_at, 1e-6)
            lag = await _first_of(consumer, _steady(inputs, watched, tag, users, rate, seconds))
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(30):
                    await consumer
    return {"events": events, "seconds": elapsed, "events_per_s": events / elapsed, **lag}


async def _steady(
    sink: KafkaEventSink, watched: _Watched, tag: str, users: int, rate: float, seconds: float
) -> dict[str, Any]:
    count = max(1, round(rate * seconds))
    sent: dict[str, float] = {}
    most_behind = 0
    sending: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    for n in range(count):
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        event = _completion(1_000_000 + n, users, tag)
        sent[event.upload_id] = time.monotonic()
        task = asyncio.create_task(sink.emit(event))
        sending.add(task)
        task.add_done_callback(sending.discard)
        behind = sum(1 for upload_id in sent if upload_id not in watched.reflected)
        most_behind = max(most_behind, behind)
    await asyncio.gather(*sending)
    await watched.until_reflected(set(sent), 120)
    delays = [(watched.reflected[u] - at) * 1000 for u, at in sent.items()]
    return {
        "rate": rate,
        "steady_events": count,
        "lag_p50_ms": percentile(delays, 50),
        "lag_p99_ms": percentile(delays, 99),
        "lag_max_ms": max(delays),
        "max_behind": most_behind,
    }


async def _first_of(consumer: asyncio.Task[None], work: Awaitable[T]) -> T:
    """`work`'s result, or the consumer's failure if it stops first."""
    waiting = asyncio.ensure_future(work)
    await asyncio.wait({consumer, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if not waiting.done():
        waiting.cancel()
        error = consumer.exception()
        raise RuntimeError(f"consumers: the quota consumer stopped: {error!r}")
    result: T = waiting.result()
    return result


async def _delete_topics(servers: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if name.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


def spread_of(figures: dict[str, Any]) -> Spread:
    return Spread(figures["median"], figures["min"], figures["max"], figures["n"])


async def run(
    ctx: Context,
    *,
    events: int,
    users: int,
    rate: float,
    seconds: float,
    runs: int,
    video_seconds: float = 60.0,
) -> dict[str, Any]:
    environment = await asyncio.to_thread(describe, ctx.settings)
    print(describe_machine(environment))
    results = []
    for n in range(runs):
        result = await one_run(ctx, events=events, users=users, rate=rate, seconds=seconds)
        print(
            f"  run {n + 1}: {result['events_per_s']:.0f} events/s, lag p50 "
            f"{result['lag_p50_ms']:.1f} ms, p99 {result['lag_p99_ms']:.1f} ms, "
            f"at most {result['max_behind']} behind",
            flush=True,
        )
        results.append(result)
    summary = {
        key: spread([r[key] for r in results])
        for key in ("events_per_s", "lag_p50_ms", "lag_p99_ms", "lag_max_ms", "max_behind")
    }
    print_table(
        f"consumers: quota consumer, {events} completed uploads of {users} users, then "
        f"{rate:g}/s for {seconds:g} s; median (min-max) of {runs} runs",
        ["events/s", "lag p50 ms", "lag p99 ms", "lag max ms", "most behind"],
        [[summary[k] for k in summary]],
    )
    analysed = await detection.measure(ctx.out, seconds=video_seconds, runs=runs)
    print_table(
        f"consumers: detection, a {video_seconds:g} s 1280x720 30 fps MPEG-4 clip, one sample "
        f"a second; median (min-max) of {runs} runs",
        ["s per video-minute", "CPU s per video-minute", "decoding alone", "videos/min", "workers"],
        [
            [
                spread_of(analysed["seconds_per_video_minute"]),
                spread_of(analysed["cpu_seconds_per_video_minute"]),
                spread_of(analysed["decode_seconds_per_video_minute"]),
                spread_of(analysed["videos_per_minute"]),
                analysed["workers"],
            ]
        ],
    )
    return await asyncio.to_thread(
        write_result,
        ctx.out,
        "consumers",
        ctx.label,
        {
            "environment": environment,
            "config": {
                "consumer": "quota",
                "events": events,
                "users": users,
                "rate": rate,
                "seconds": seconds,
                "runs": runs,
                "video_seconds": video_seconds,
            },
            "summary": summary,
            "runs": results,
            "detection": analysed,
        },
    )
