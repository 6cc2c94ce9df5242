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
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from cli import upload
from deploy import stack
from infra.env import SettingsError, duration
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
    except (stack.StackError, SettingsError) as error:
        print(f"ingest: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ingest", description=__doc__)
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

    token = commands.add_parser(
        "token", help="issue a development token (HS256, INGEST_JWT_SECRET)"
    )
    token.add_argument("--user", required=True, help="the user id (the token's sub)")
    token.add_argument("--admin", action="store_true", help="grant the admin role")
    token.add_argument("--ttl", default="24h", help="lifetime, e.g. 3600, 90m, 24h (default 24h)")
    token.set_defaults(run=_token)

    upload.add_parser(commands)

    provision = commands.add_parser(
        "provision", help="create the bucket and the topics (with their configurations) if missing"
    )
    provision.set_defaults(run=_provision)
    return parser


def _state_dir(args: argparse.Namespace) -> Path:
    return args.dir if args.dir is not None else stack.default_state_dir()


def _stack_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    endpoints = stack.up(
        _state_dir(args),
        cache_dir=stack.default_cache_dir(),
        kafka_port=args.kafka_port,
        minio_port=args.s3_port,
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
    print("stack stopped" if stopped else "no stack was running", file=sys.stderr)
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
    asyncio.run(serve(settings))
    return 0


def _dev(args: argparse.Namespace) -> int:
    from cli.dev import dev_settings, run_dev

    _configure_logging()
    settings = dev_settings(ingest_settings_from_env(), os.environ)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    asyncio.run(run_dev(msgspec.structs.replace(settings, **overrides)))
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


def _configure_logging() -> None:
    level = os.environ.get("INGEST_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))


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
