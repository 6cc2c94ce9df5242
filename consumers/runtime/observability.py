"""A consumer's own small HTTP port: `/healthz`, `/readyz` and `/metrics`.

`/healthz` answers 200 while the runtime is alive: no failure recorded and,
once it has fetched at all, a fetch within `stale_seconds` (a fetch loop that
hangs is restarted by the orchestrator). `/readyz` answers 200 while the
member is in its group and its last fetch did not fail. `/metrics` is the
Prometheus text of the runtime's registry.

How it fails: binding the port raises OSError from `serve_observability`
(the process cannot start without it). Handlers never raise.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from consumers.runtime.runtime import ConsumerRuntime
from infra.describe import in_words

RUNTIME = web.AppKey("runtime", ConsumerRuntime)
STALE_SECONDS = web.AppKey("stale_seconds", float)


def observability_app(runtime: ConsumerRuntime, *, stale_seconds: float = 60.0) -> web.Application:
    app = web.Application()
    app[RUNTIME] = runtime
    app[STALE_SECONDS] = stale_seconds
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app


@asynccontextmanager
async def serve_observability(
    runtime: ConsumerRuntime, host: str, port: int, *, stale_seconds: float = 60.0
) -> AsyncIterator[web.AppRunner]:
    """Listen on host:port (0: a free one, see `runner.addresses`) while the block runs."""
    runner = web.AppRunner(observability_app(runtime, stale_seconds=stale_seconds), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield runner
    finally:
        await runner.cleanup()


async def _healthz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    if runtime.failure is not None:
        return _answer(503, f"failed: {in_words(runtime.failure)}")
    last = runtime.last_poll
    stale = request.app[STALE_SECONDS]
    if last is not None and time.monotonic() - last > stale:
        return _answer(503, f"no fetch for over {stale:g} s")
    return _answer(200, "ok")


async def _readyz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    if not runtime.ready:
        return _answer(503, "not in the group")
    if runtime.last_error is not None:
        return _answer(503, f"cannot fetch: {runtime.last_error}")
    return _answer(200, "ok")


async def _metrics(request: web.Request) -> web.Response:
    registry = request.app[RUNTIME].metrics.registry
    return web.Response(
        body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def _answer(status: int, text: str) -> web.Response:
    return web.json_response({"status": text}, status=status)
