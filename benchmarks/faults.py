"""`python -m benchmarks faults`: Kafka killed under uploads; `ingest serve` killed with a journal.

Each scenario runs a private single-node Kafka (killed with SIGKILL and started
again on its data and port) and a real `ingest serve` process on it (and on
the stack's S3), streams throttled uploads, and measures what the spec
promises: every upload answered 201 while the broker is still down, a new
upload during the outage accepted, and once the broker is back, every
lifecycle event of every upload on `ingest.uploads` in per-upload `sequence`
order, none lost. The integration tests run the same scenarios with short
outages and assert on the outcome; the benchmark prints a table.

The broker is a `benchmarks.private_broker.PrivateBroker`, the server a
`benchmarks.serve_process.serve`; this module runs the scenarios and tallies
what came out of them.

How it fails: RuntimeError when Java or the Kafka jars are missing, a process
does not become ready, or the events do not arrive within the time limit.
Every process started here is stopped on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer

from benchmarks.client import UploadOutcome, Users, create_session, http_session, upload
from benchmarks.context import Context, delete_objects
from benchmarks.environment import secret_of, server_env
from benchmarks.private_broker import PrivateBroker
from benchmarks.report import print_table, size_label, write_result
from benchmarks.serve_process import ServeProcess, serve
from benchmarks.workload import trickle_body
from infra.env import MiB
from infra.provisioning import ensure_topics
from ingest.settings import IngestSettings
from schemas import Topics, UploadEvent, decode

CHUNK = 256 * 1024


@dataclass(frozen=True)
class Load:
    uploads: int
    size: int
    seconds: float
    """How long each throttled body takes to send."""

    def describe(self) -> str:
        return f"{self.uploads} x {size_label(self.size)} over {self.seconds:g} s"


@dataclass
class FaultOutcome:
    fault: str
    load: str
    outage_seconds: float
    answered: int
    """Uploads answered 201 (the load's, and the one started during the outage)."""
    failed: dict[str, int]
    answered_while_down: int
    """Uploads answered while the broker was still down."""
    slowest_answer_seconds: float
    """The longest wait for an answer after the last byte of a body was sent."""
    recover_seconds: float
    """From the broker answering again to every lifecycle event on the topic."""
    expected_events: int
    lost_events: int
    out_of_order_uploads: int
    duplicate_events: int
    log_lines_while_down: int
    ingest_stop_seconds: float | None
    """From the signal to the server's exit, when one was sent."""


@dataclass
class _Tracked:
    session_url: str
    last_byte_at: float = 0.0
    outcome: UploadOutcome | None = None


async def broker_outage(
    settings: IngestSettings,
    load: Load,
    *,
    outage: float,
    workdir: Path,
    stop_ingest: signal.Signals | None = None,
    kill_broker: bool = True,
    shutdown_grace: float = 30.0,
    drain_within: float = 60.0,
) -> FaultOutcome:
    """Kill the broker while `load` streams; with `stop_ingest`, send the server that signal
    during the outage too, and let a new one (same journal directory) send what the first
    journaled once the broker is back. Without `kill_broker`, the same load with nothing
    broken: the baseline."""
    broker = await asyncio.to_thread(PrivateBroker, workdir / "kafka")
    await asyncio.to_thread(broker.start)
    prefix = f"faults-{uuid.uuid4().hex[:8]}."
    try:
        await ensure_topics(broker.bootstrap, Topics(prefix))
        env = {
            **server_env(settings, max_file_size=max(load.size, MiB) * 2),
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "INGEST_TOPIC_PREFIX": prefix,
            "INGEST_JOURNAL_DIR": str(workdir / "journal"),
            "INGEST_LOG_LEVEL": "INFO",
            "INGEST_SHUTDOWN_GRACE": f"{shutdown_grace:g}s",
        }
        return await _run_outage(
            settings,
            broker,
            env,
            prefix,
            load,
            outage if kill_broker else None,
            stop_ingest,
            drain_within,
        )
    finally:
        await asyncio.to_thread(broker.stop)


async def _run_outage(
    settings: IngestSettings,
    broker: PrivateBroker,
    env: dict[str, str],
    prefix: str,
    load: Load,
    outage: float | None,
    stop_ingest: signal.Signals | None,
    drain_within: float,
) -> FaultOutcome:
    users = Users(secret_of(settings), max(1, load.uploads // 4))
    tracked: list[_Tracked] = []
    log = Path(env["INGEST_JOURNAL_DIR"]).parent / "serve.log"
    async with serve(env, log=log) as server, http_session() as http:
        for n in range(load.uploads):
            tracked.append(
                _Tracked(await create_session(http, server.url, users.auth(n), load.size))
            )
        streams = [
            asyncio.create_task(_stream(http, one, users.auth(n), load))
            for n, one in enumerate(tracked)
        ]
        await asyncio.sleep(min(1.5, load.seconds / 3))
        killed_at = time.monotonic()
        if outage is not None:
            await asyncio.to_thread(broker.kill)
        await asyncio.gather(*streams)
        # A new upload while the broker is still down.
        late = _Tracked(await create_session(http, server.url, users.auth(0), MiB))
        await _stream(http, late, users.auth(0), Load(1, MiB, 0.2))
        tracked.append(late)
        stop_seconds = await _stop(server, stop_ingest)
        if outage is not None:
            await asyncio.sleep(max(0.0, killed_at + outage - time.monotonic()))
        restart_began = time.monotonic()
        log_lines = server.lines_between(killed_at, restart_began)
        if outage is not None:
            await asyncio.to_thread(broker.restart)
        back_at = time.monotonic()
        if stop_ingest is not None:
            async with serve(env, log=log):
                events = await _lifecycle_events(broker.bootstrap, prefix, tracked, drain_within)
        else:
            events = await _lifecycle_events(broker.bootstrap, prefix, tracked, drain_within)
        recovered_at = time.monotonic()
    keys = [t.outcome.result["s3_key"] for t in tracked if t.outcome and t.outcome.result]
    await delete_objects(settings, keys)
    fault = "none (baseline)" if outage is None else "Kafka SIGKILLed"
    if stop_ingest is not None:
        fault += f", ingest serve {stop_ingest.name} in the outage"
    return _outcome(
        fault,
        load,
        outage or 0.0,
        tracked,
        events,
        restart_began=restart_began,
        recover_seconds=recovered_at - back_at,
        log_lines=log_lines,
        stop_seconds=stop_seconds,
    )


async def _stop(server: ServeProcess, how: signal.Signals | None) -> float | None:
    """Send `how` to the server; the seconds until it exited (None: nothing sent)."""
    if how is None:
        return None
    started = time.monotonic()
    server.process.send_signal(how)
    async with asyncio.timeout(120):
        await server.process.wait()
    return time.monotonic() - started


async def _stream(
    http: aiohttp.ClientSession, one: _Tracked, auth: dict[str, str], load: Load
) -> None:
    chunks = max(1, -(-load.size // CHUNK))
    interval = load.seconds / chunks

    def sent(total: int) -> None:
        if total >= load.size:
            one.last_byte_at = time.monotonic()

    body = trickle_body(load.size, CHUNK, interval, on_sent=sent)
    one.outcome = await upload(http, one.session_url, auth, body, load.size)


def _upload_id(session_url: str) -> str:
    return session_url.rstrip("/").rsplit("/", 1)[-1]


async def _lifecycle_events(
    bootstrap: str, prefix: str, tracked: list[_Tracked], within: float
) -> dict[str, list[UploadEvent]]:
    """Each upload's lifecycle events in topic order, once every answered one has its end."""
    wanted = {_upload_id(t.session_url) for t in tracked if t.outcome and t.outcome.ok}
    found: dict[str, list[UploadEvent]] = {upload_id: [] for upload_id in wanted}
    consumer = AIOKafkaConsumer(
        Topics(prefix).uploads,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while not all(_ended(events) for events in found.values()):
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        for record in records:
                            event = decode(record.value, record.headers)
                            if isinstance(event, UploadEvent) and event.upload_id in found:
                                found[event.upload_id].append(event)
    finally:
        await consumer.stop()
    return found


def _ended(events: list[UploadEvent]) -> bool:
    return any(type(e).__name__ in {"UploadCompleted", "UploadFailed"} for e in events)


def _outcome(
    fault: str,
    load: Load,
    outage: float,
    tracked: list[_Tracked],
    events: dict[str, list[UploadEvent]],
    *,
    restart_began: float,
    recover_seconds: float,
    log_lines: int,
    stop_seconds: float | None,
) -> FaultOutcome:
    outcomes = [t.outcome for t in tracked if t.outcome is not None]
    failed: dict[str, int] = {}
    for outcome in outcomes:
        if not outcome.ok:
            failed[outcome.error or "?"] = failed.get(outcome.error or "?", 0) + 1
    answered = [t for t in tracked if t.outcome is not None and t.outcome.ok]
    lost = duplicates = disordered = 0
    for upload_events in events.values():
        distinct: dict[str, UploadEvent] = {}
        for event in upload_events:
            if event.event_id in distinct:
                duplicates += 1
            distinct.setdefault(event.event_id, event)
        sequences = [event.sequence for event in distinct.values()]
        if sequences != sorted(sequences):
            disordered += 1
        kinds = {type(event).__name__ for event in distinct.values()}
        lost += len({"UploadStarted", "UploadCompleted"} - kinds)
    return FaultOutcome(
        fault=fault,
        load=load.describe(),
        outage_seconds=outage,
        answered=len(answered),
        failed=failed,
        answered_while_down=sum(
            1 for t in answered if t.outcome is not None and t.outcome.ended < restart_began
        ),
        slowest_answer_seconds=max(
            (t.outcome.ended - t.last_byte_at for t in answered if t.outcome), default=0.0
        ),
        recover_seconds=recover_seconds,
        expected_events=2 * len(answered),
        lost_events=lost,
        out_of_order_uploads=disordered,
        duplicate_events=duplicates,
        log_lines_while_down=log_lines,
        ingest_stop_seconds=stop_seconds,
    )


async def run(
    ctx: Context, *, outage: float, uploads: int, size: int, seconds: float
) -> dict[str, Any]:
    """Both faults under the same load; prints the table and writes `faults.json`."""
    load = Load(uploads, size, seconds)
    results: list[FaultOutcome] = []
    scenarios: list[tuple[bool, signal.Signals | None]] = [
        (False, None),
        (True, None),
        (True, signal.SIGTERM),
        (True, signal.SIGKILL),
    ]
    for kill_broker, stop_ingest in scenarios:
        with tempfile.TemporaryDirectory(prefix="faults-") as workdir:
            results.append(
                await broker_outage(
                    ctx.settings,
                    load,
                    outage=outage,
                    workdir=Path(workdir),
                    stop_ingest=stop_ingest,
                    kill_broker=kill_broker,
                )
            )
    print_table(
        f"faults: Kafka down for {outage:g} s",
        [
            "fault",
            "load",
            "201",
            "answered while down",
            "slowest answer after body (s)",
            "time to recover (s)",
            "lost events",
            "out of order",
            "duplicates",
            "log lines while down",
            "ingest exit (s)",
        ],
        [
            [
                r.fault,
                r.load,
                f"{r.answered}/{uploads + 1}",
                r.answered_while_down if r.outage_seconds else "-",
                f"{r.slowest_answer_seconds:.2f}",
                f"{r.recover_seconds:.1f}",
                f"{r.lost_events}/{r.expected_events}",
                r.out_of_order_uploads,
                r.duplicate_events,
                r.log_lines_while_down,
                "-" if r.ingest_stop_seconds is None else f"{r.ingest_stop_seconds:.1f}",
            ]
            for r in results
        ],
    )
    result = {"outage_seconds": outage, "load": load.describe(), "runs": [vars(r) for r in results]}
    write_result(ctx.out, "faults", ctx.label, result)
    return result
