"""`ingest doctor`: which settings are in force, what is reachable, and what is wrong.

Reads the same environment as `ingest serve`, prints every setting that
matters with where it came from (secrets only as "set, N characters"), then
checks, each within a few seconds: the settings themselves and the JWT key,
Kafka (answers, the topics exist, the user-keyed topics share one partition
count) and S3 (answers, the bucket exists and these credentials may use it).
Exit status 0 when nothing is wrong, 1 otherwise; a warning (no JWT key, which
`ingest dev` does not need) does not fail it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from aiobotocore.config import AioConfig
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from botocore.exceptions import ClientError, NoCredentialsError

from infra.describe import in_words
from infra.env import SettingsError
from infra.s3 import open_s3, warm_session
from ingest.settings import IngestSettings, ingest_settings_from_env
from schemas.topics import Topics

CHECK_TIMEOUT = 8.0

# Shown in this order, whether set or not; any other variable of ours that is set follows.
SHOWN = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "INGEST_TOPIC_PREFIX",
    "S3_ENDPOINT_URL",
    "S3_BUCKET",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "INGEST_JWT_SECRET",
    "INGEST_JWT_PUBLIC_KEY",
    "INGEST_HOST",
    "INGEST_PORT",
    "INGEST_DATA_DIR",
    "INGEST_MAX_FILE_SIZE",
    "INGEST_ALLOWED_FORMATS",
    "INGEST_LOG_FORMAT",
)
_OURS = ("INGEST_", "KAFKA_", "S3_", "AWS_", "CONSUMER_")
_SECRET_WORDS = ("SECRET", "KEY", "TOKEN", "PASSWORD")

Verdict = Literal["ok", "warn", "FAIL", "skip"]


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    what: str


def run_doctor(environ: Mapping[str, str] = os.environ) -> int:
    # The checks below say what failed; the clients' own log lines would only repeat it.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    print("settings in force (from the environment, or the default):")
    for name, value, origin in settings_in_force(environ):
        print(f"  {name:<26} {value}  ({origin})")
    print("\nchecks:")
    checks = asyncio.run(_checks(environ))
    for check in checks:
        print(f"  {check.verdict:<4}  {check.what}")
    failed = sum(check.verdict == "FAIL" for check in checks)
    print(
        f"\n{failed} problem{'s' if failed != 1 else ''} found."
        if failed
        else "\nnothing wrong found."
    )
    return 1 if failed else 0


def settings_in_force(environ: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(variable, value shown, origin) for the variables that matter, secrets masked."""
    defaults = _defaults()
    names = list(SHOWN) + sorted(
        name for name in environ if name.startswith(_OURS) and name not in SHOWN
    )
    shown = []
    for name in names:
        value = environ.get(name)
        if value:
            shown.append((name, _masked(name, value), "environment"))
        else:
            shown.append((name, defaults.get(name, "-"), "default"))
    return shown


def _defaults() -> dict[str, str]:
    base = IngestSettings()
    return {
        "KAFKA_BOOTSTRAP_SERVERS": base.kafka_bootstrap_servers,
        "INGEST_TOPIC_PREFIX": base.topic_prefix,
        "S3_ENDPOINT_URL": str(base.s3_endpoint_url),
        "S3_BUCKET": base.s3_bucket,
        "AWS_REGION": base.aws_region,
        "AWS_ACCESS_KEY_ID": "the local stack's, or the standard credential chain",
        "AWS_SECRET_ACCESS_KEY": "the local stack's, or the standard credential chain",
        "INGEST_JWT_SECRET": "not set",
        "INGEST_JWT_PUBLIC_KEY": "not set",
        "INGEST_HOST": base.host,
        "INGEST_PORT": str(base.port),
        "INGEST_DATA_DIR": str(base.data_dir),
        "INGEST_MAX_FILE_SIZE": "500MiB",
        "INGEST_ALLOWED_FORMATS": ",".join(base.allowed_formats),
        "INGEST_LOG_FORMAT": "text",
    }


def _masked(name: str, value: str) -> str:
    if any(word in name for word in _SECRET_WORDS):
        return f"set, {len(value)} characters"
    return value


async def _checks(environ: Mapping[str, str]) -> list[Check]:
    try:
        settings = ingest_settings_from_env(environ)
    except SettingsError as error:
        return [
            Check("FAIL", f"settings: {error}"),
            Check("skip", "Kafka and S3: not checked until the settings are right"),
        ]
    checks = [Check("ok", "settings parse and hold together"), _jwt_check(settings)]
    kafka, s3 = await asyncio.gather(_kafka_checks(settings), _s3_checks(settings))
    return checks + kafka + s3


def _jwt_check(settings: IngestSettings) -> Check:
    if settings.jwt_public_key:
        return Check("ok", "JWT: RS256 public key (checked when the settings were read)")
    if settings.jwt_secret:
        return Check("ok", f"JWT: HS256 secret of {len(settings.jwt_secret.encode())} bytes")
    return Check(
        "warn",
        "JWT: neither INGEST_JWT_SECRET nor INGEST_JWT_PUBLIC_KEY is set: `ingest serve` "
        "refuses to start (`ingest dev` makes its own secret)",
    )


async def _kafka_checks(settings: IngestSettings) -> list[Check]:
    where = settings.kafka_bootstrap_servers
    admin = AIOKafkaAdminClient(bootstrap_servers=where, request_timeout_ms=5000)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await admin.start()
            brokers = len((await admin.describe_cluster())["brokers"])
            existing = set(await admin.list_topics())
            topics = Topics(settings.topic_prefix)
            wanted = topics.specs()
            missing = [name for name, _ in wanted if name not in existing]
            keyed = [name for name, spec in wanted if spec.key == "user_id" and name in existing]
            counts = await _partition_counts(admin, keyed)
    except Exception as error:  # whatever stops the check is what the user needs to read
        # aiokafka's own text lists resolved addresses (`<AddressFamily.AF_INET: 2>`).
        reason = (
            "no broker could be reached there"
            if isinstance(error, KafkaConnectionError)
            else in_words(error)
        )
        return [
            Check("FAIL", f"Kafka at {where} does not answer: {reason}"),
            Check("skip", "topics: not checked without Kafka"),
        ]
    finally:
        with contextlib.suppress(Exception):  # closing a client that never connected may fail
            await admin.close()
    checks = [Check("ok", f"Kafka at {where} answers ({brokers} broker{'s' * (brokers != 1)})")]
    if missing:
        checks.append(
            Check("FAIL", f"topics missing: {', '.join(missing)}; run `ingest provision`")
        )
    else:
        checks.append(Check("ok", f"topics: all {len(wanted)} present"))
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
        checks.append(
            Check("FAIL", f"user-keyed topics need one partition count, they have: {listed}")
        )
    return checks


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    if not names:
        return {}
    return {
        description["topic"]: len(description.get("partitions", []))
        for description in await admin.describe_topics(names)
    }


async def _s3_checks(settings: IngestSettings) -> list[Check]:
    where = settings.s3_endpoint_url or "AWS S3"
    bucket = settings.s3_bucket
    config = AioConfig(connect_timeout=3, read_timeout=5, retries={"max_attempts": 1})
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            session = await warm_session()
            async with open_s3(session, settings.s3_endpoint(), config) as s3:
                await s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        answered = Check("ok", f"S3 at {where} answers")
        if code in ("404", "NoSuchBucket"):
            return [
                answered,
                Check("FAIL", f"bucket {bucket} does not exist; run `ingest provision`"),
            ]
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return [
                answered,
                Check("FAIL", f"bucket {bucket}: S3 refused these credentials ({code})"),
            ]
        return [answered, Check("FAIL", f"bucket {bucket}: S3 answered {code or in_words(error)}")]
    except NoCredentialsError:
        return [
            Check(
                "FAIL",
                f"S3 at {where}: no credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            ),
            Check("skip", f"bucket {bucket}: not checked without credentials"),
        ]
    except Exception as error:
        return [
            Check("FAIL", f"S3 at {where} does not answer: {in_words(error)}"),
            Check("skip", f"bucket {bucket}: not checked without S3"),
        ]
    return [
        Check("ok", f"S3 at {where} answers"),
        Check("ok", f"bucket {bucket} exists and is usable"),
    ]
