"""Liveness, readiness and Prometheus metrics: the routes an operator's tooling calls.

Readiness with an event journal in front of Kafka: a broker that does not
answer does not make the instance unready while the journal has room (events
are journaled meanwhile, and the body says so); a journal that must refuse
new uploads does. Nor does the quota view, which reads Kafka, while Kafka
itself does not answer: quotas are answered from the snapshots read so far
(none, for a process started in the outage: each user's limits from the
defaults), and the body says that too. With Kafka back, a quota view not
caught up makes the instance unready again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest.errors import IngestError
from ingest.http.responses import json_response
from ingest.http.services import SERVICES
from ingest.ports import EventBacklog

log = logging.getLogger(__name__)

READINESS_TIMEOUT = 3.0


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    if svc.active.draining:
        return json_response({"status": "draining"}, status=503)
    checks = {"s3": svc.store.check(), "kafka": svc.sink.check(), "quota": svc.quota.check()}
    results: dict[str, str] = {}
    for name, outcome in zip(
        checks, await asyncio.gather(*(_bounded(c) for c in checks.values())), strict=True
    ):
        results[name] = outcome
    body: dict[str, object] = {"checks": results}
    if isinstance(svc.sink, EventBacklog):
        backlog = svc.sink.backlog()
        results["journal"] = "ok" if backlog.has_room else "full"
        kafka_down = results["kafka"] != "ok"
        if kafka_down and backlog.has_room:
            results["kafka"] += "; events are journaled until it is back"
        if kafka_down and results["quota"] != "ok":
            results["quota"] += "; answered from the snapshots read so far until Kafka is back"
        body["journal"] = {
            "events": backlog.events,
            "bytes": backlog.bytes,
            "oldest_seconds": round(backlog.oldest_seconds or 0.0, 1),
            "broker_up": backlog.broker_up,
        }
        # Uploads never wait on the broker: only a journal without room makes this unready.
        waived = {"kafka", "quota"} if kafka_down else {"kafka"}
        ready = all(outcome == "ok" for name, outcome in results.items() if name not in waived)
    else:
        ready = all(outcome == "ok" for outcome in results.values())
    body = {"status": "ready" if ready else "not ready", **body}
    return json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    svc.metrics.buffer_bytes.set(svc.budget.in_use)
    svc.metrics.buffer_waiters.set(svc.budget.waiting)
    svc.metrics.parts_in_flight.set(svc.budget.holders)
    if isinstance(svc.sink, EventBacklog):
        backlog = svc.sink.backlog()
        svc.metrics.journal_events.set(backlog.events)
        svc.metrics.journal_bytes.set(backlog.bytes)
        svc.metrics.journal_oldest.set(backlog.oldest_seconds or 0.0)
        svc.metrics.broker_up.set(1 if backlog.broker_up else 0)
    return web.Response(
        body=generate_latest(svc.metrics.registry),
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )


async def _bounded(check: Awaitable[None]) -> str:
    try:
        async with asyncio.timeout(READINESS_TIMEOUT):
            await check
        return "ok"
    except TimeoutError:
        return "timed out"
    except IngestError as error:
        # The reason can name endpoints and buckets: logged, never in the 503 body.
        log.warning("readiness check failed: %s %s", error.error_code, error.message)
        return "failed"
