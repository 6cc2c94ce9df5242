"""`ingest` subcommands. Each parses its flags, builds settings and hands off.

Exit status: 0 on success, 1 when the work failed (the reason on stderr), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from cli import upload
from cli.listening import PortUnavailable, bind_errors_explained, check_port
from deploy import stack
from infra import logs
from infra.env import SettingsError, duration
from infra.errors import ServiceError
from infra.kafka.logs import limit_repeated_lines
from infra.provisioning import ensure_bucket, ensure_topics
from ingest.auth import issue_token
from ingest.settings import IngestSettings, ingest_settings_from_env
from schemas.topics import Topics

if TYPE_CHECKING:
    from cli.consume import AppFactory
    from consumers.runtime.settings import ConsumerSettings


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (stack.StackError, SettingsError, PortUnavailable) as error:
        print(f"ingest: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ingest", description=__doc__)
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    stack_parser = commands.add_parser(
        "stack", help="a real Kafka and MinIO on 127.0.0.1 for development and tests"
    )
    stack_commands = stack_parser.add_subparsers(required=True, metavar="ACTION")
    for name, run, text in (
        (
            "up",
            _stack_up,
            "install on first use, start, wait until ready, create bucket and topics",
        ),
        ("down", _stack_down, "stop the stack and delete its data"),
        ("status", _stack_status, "show what runs, where, and its logs"),
        (
            "env",
            _stack_env,
            'print the variables for the running stack: eval "$(ingest stack env)"',
        ),
    ):
        action = stack_commands.add_parser(name, help=text)
        action.add_argument(
            "--dir", type=Path, default=None, help="state directory (default: a temporary one)"
        )
        action.set_defaults(run=run)
        if name == "up":
            action.add_argument("--kafka-port", type=int, default=9092)
            action.add_argument("--s3-port", type=int, default=9000)

    serve = commands.add_parser("serve", help="the ingest HTTP server (sessions, uploads)")
    serve.add_argument("--host", default=None, help="address to listen on (INGEST_HOST)")
    serve.add_argument("--port", type=int, default=None, help="port to listen on (INGEST_PORT)")
    serve.set_defaults(run=_serve)

    dev = commands.add_parser(
        "dev", help="everything in one process on one port, on local disk unless Kafka/S3 are set"
    )
    dev.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=None, help="port (default 8080)")
    dev.set_defaults(run=_dev)

    consume = commands.add_parser(
        "consume", help="run one consumer on Kafka until SIGTERM (health and metrics on a port)"
    )
    consume.add_argument("name", help="the consumer to run")
    consume.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="health and metrics port (CONSUMER_METRICS_PORT)",
    )
    consume.add_argument(
        "--metrics-host", default=None, help="address of that port (CONSUMER_METRICS_HOST)"
    )
    consume.add_argument(
        "--host", default=None, help="fanout: address to listen on (FANOUT_HOST, 127.0.0.1)"
    )
    consume.add_argument("--port", type=int, default=None, help="fanout: port (FANOUT_PORT, 8081)")
    consume.set_defaults(run=_consume)

    reconcile = commands.add_parser(
        "reconcile",
        help="re-emit every upload.completed that S3 holds and the uploads topic lacks",
    )
    reconcile.add_argument(
        "--since",
        default=None,
        help="only uploads completed since then: a duration back (90m, 24h) or an ISO 8601 time",
    )
    reconcile.set_defaults(run=_reconcile)

    token = commands.add_parser(
        "token", help="issue a development token (HS256, INGEST_JWT_SECRET)"
    )
    token.add_argument("--user", required=True, help="the user id (the token's sub)")
    token.add_argument("--admin", action="store_true", help="grant the admin role")
    token.add_argument("--ttl", default="24h", help="lifetime, e.g. 3600, 90m, 24h (default 24h)")
    token.set_defaults(run=_token)

    upload.add_parser(commands)

    sweep = commands.add_parser(
        "sweep",
        help="one pass of the clean-up: uploads of dead instances and expired sessions ended, "
        "leftover parts aborted; prints what it did",
    )
    sweep.add_argument("--quiet", action="store_true", help="print only the summary line")
    sweep.add_argument(
        "--rebuild-index",
        action="store_true",
        help="first enter every session that may need a sweep in the index of open sessions "
        "(once, for sessions written before that index existed): reads every session",
    )
    sweep.set_defaults(run=_sweep)

    provision = commands.add_parser(
        "provision", help="create the bucket and the topics (with their configurations) if missing"
    )
    provision.set_defaults(run=_provision)

    doctor = commands.add_parser(
        "doctor", help="show the settings in force, check Kafka, S3, bucket and topics"
    )
    doctor.set_defaults(run=_doctor)
    return parser


def _version() -> str:
    try:
        installed = metadata.version("video-ingest")
    except metadata.PackageNotFoundError:
        installed = "(not installed: run from a source tree)"
    python = ".".join(str(part) for part in sys.version_info[:3])
    return f"ingest {installed} (Python {python})"


def _doctor(args: argparse.Namespace) -> int:
    from cli.doctor import run_doctor

    return run_doctor()


def _state_dir(args: argparse.Namespace) -> Path:
    return args.dir if args.dir is not None else stack.default_state_dir()


def _stack_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    endpoints = stack.up(
        _state_dir(args),
        cache_dir=stack.default_cache_dir(),
        kafka_port=args.kafka_port,
        minio_port=args.s3_port,
        say=lambda line: print(line, file=sys.stderr),
    )
    settings = ingest_settings_from_env(endpoints.environment())
    asyncio.run(_provision_all(settings))
    print(
        f"stack up in {time.monotonic() - started:.1f}s (state in {_state_dir(args)})",
        file=sys.stderr,
    )
    for line in _export_lines(endpoints):
        print(line)
    return 0


def _stack_down(args: argparse.Namespace) -> int:
    stopped = stack.down(_state_dir(args))
    what = f"stopped {' and '.join(stopped)}" if stopped else "nothing of the stack was running"
    print(f"{what}; deleted {_state_dir(args)}", file=sys.stderr)
    return 0


def _stack_status(args: argparse.Namespace) -> int:
    report = stack.status(_state_dir(args))
    print(json.dumps(report, indent=2))
    return 0 if report["running"] else 1


def _stack_env(args: argparse.Namespace) -> int:
    endpoints = stack.endpoints(_state_dir(args))
    if endpoints is None:
        print("ingest: no stack is running; start one with `ingest stack up`", file=sys.stderr)
        return 1
    for line in _export_lines(endpoints):
        print(line)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from cli.serve import serve

    _configure_logging()
    settings = ingest_settings_from_env()
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = msgspec.structs.replace(settings, **overrides)
    if not (settings.jwt_secret or settings.jwt_public_key):
        raise SettingsError("set INGEST_JWT_SECRET (HS256) or INGEST_JWT_PUBLIC_KEY (RS256)")
    change = "ingest serve --port {port} (or INGEST_PORT={port})"
    check_port(settings.host, settings.port, how_to_change=change)
    with bind_errors_explained(settings.host, settings.port, how_to_change=change):
        asyncio.run(serve(settings))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from cli.sweep import sweep_once

    _configure_logging()
    try:
        report = asyncio.run(
            sweep_once(ingest_settings_from_env(), rebuild_index=args.rebuild_index)
        )
    except ServiceError as error:
        print(f"ingest: the sweep could not run: {error}", file=sys.stderr)
        return 1
    for line in report.lines()[:1] if args.quiet else report.lines():
        print(line)
    return 1 if report.retry else 0


def _dev(args: argparse.Namespace) -> int:
    from cli.dev import dev_settings, run_dev

    _configure_logging()
    settings = dev_settings(ingest_settings_from_env(), os.environ)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = msgspec.structs.replace(settings, **overrides)
    change = "ingest dev --port {port} (or make dev PORT={port})"
    check_port(settings.host, settings.port, how_to_change=change)
    with bind_errors_explained(settings.host, settings.port, how_to_change=change):
        asyncio.run(run_dev(settings))
    return 0


def _consume(args: argparse.Namespace) -> int:
    from cli.consume import CONSUMER_APPS
    from consumers.runtime.settings import consumer_settings_from_env

    if args.name == "fanout":
        return _fanout(args)
    factory = CONSUMER_APPS.get(args.name)
    if factory is None:
        known = ", ".join(sorted([*CONSUMER_APPS, "fanout"]))
        print(f"ingest: no consumer named {args.name!r} (known: {known})", file=sys.stderr)
        return 2
    _configure_logging()
    settings = consumer_settings_from_env()
    overrides = {
        k: v
        for k, v in (("metrics_port", args.metrics_port), ("metrics_host", args.metrics_host))
        if v is not None
    }
    settings = msgspec.structs.replace(settings, **overrides)
    asyncio.run(_run_registered(factory, settings))
    return 0


def _fanout(args: argparse.Namespace) -> int:
    from cli.fanout import run_fanout
    from consumers.fanout.settings import fanout_settings_from_env

    _configure_logging()
    settings = fanout_settings_from_env()
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    asyncio.run(run_fanout(msgspec.structs.replace(settings, **overrides)))
    return 0


async def _run_registered(factory: AppFactory, settings: ConsumerSettings) -> None:
    from cli.consume import run_consumer

    async with factory(settings) as app:
        await run_consumer(app, settings)


def _token(args: argparse.Namespace) -> int:
    from cli.dev import dev_settings

    # Without INGEST_JWT_SECRET, sign with the secret `ingest dev` keeps in its data dir.
    settings = dev_settings(ingest_settings_from_env(), os.environ)
    if not settings.jwt_secret:
        raise SettingsError("tokens are signed with INGEST_JWT_SECRET (HS256), which is not set")
    ttl = duration(args.ttl, "--ttl")
    print(issue_token(settings.jwt_secret, args.user, admin=args.admin, ttl_seconds=ttl))
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    from cli.reconcile import parse_since, print_report, reconcile
    from infra.errors import ServiceError

    _configure_logging()
    since = parse_since(args.since)
    try:
        report = asyncio.run(reconcile(ingest_settings_from_env(), since))
    except ServiceError as error:
        print(f"ingest: reconcile stopped: {error.message} (run it again)", file=sys.stderr)
        return 1
    print_report(report)
    return 0


def _configure_logging() -> None:
    logs.configure(
        level=os.environ.get("INGEST_LOG_LEVEL", "INFO"),
        log_format=os.environ.get("INGEST_LOG_FORMAT", "text"),
    )
    level = os.environ.get("INGEST_LOG_LEVEL", "INFO").upper()
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # A broker that is away must not flood the log with one line per retry or per record.
    limit_repeated_lines()


def _provision(args: argparse.Namespace) -> int:
    asyncio.run(_provision_all(ingest_settings_from_env()))
    return 0


async def _provision_all(settings: IngestSettings) -> None:
    created = await ensure_topics(settings.kafka_bootstrap_servers, Topics(settings.topic_prefix))
    bucket_created = await ensure_bucket(settings.s3_endpoint(), settings.s3_bucket)
    print(
        f"topics created: {', '.join(created) or 'none (all present)'}; "
        f"bucket {settings.s3_bucket}: {'created' if bucket_created else 'present'}",
        file=sys.stderr,
    )


def _export_lines(endpoints: stack.Endpoints) -> list[str]:
    return [
        f"export {name}={shlex.quote(value)}" for name, value in endpoints.environment().items()
    ]


if __name__ == "__main__":
    sys.exit(main())
