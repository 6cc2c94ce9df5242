"""Create what a deployment needs before the service starts: the bucket and the topics.

Idempotent: existing topics and buckets are left as they are (a topic whose
partition count differs is reported, not changed). Used by `ingest provision`,
by `ingest stack up` and by the test fixtures, so all three agree.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from botocore.exceptions import ClientError

from infra.s3 import S3Endpoint, open_s3, warm_session
from schemas.topics import Topics

log = logging.getLogger(__name__)

# Parts of an upload nobody finished are removed by S3 itself after this long, as a
# safety net under the service's own aborts (a killed process cannot abort anything).
ABANDONED_MULTIPART_DAYS = 2
TOPIC_VISIBLE_TIMEOUT = 30.0


async def ensure_topics(bootstrap_servers: str, topics: Topics) -> list[str]:
    """Create the missing topics with their configurations; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15000)
    await admin.start()
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        replication = min(3, brokers)
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name=name,
                num_partitions=spec.partitions,
                replication_factor=replication,
                topic_configs=dict(spec.config),
            )
            for name, spec in topics.specs()
            if name not in existing
        ]
        if missing:
            response = await admin.create_topics(missing, timeout_ms=15000)
            failures = [
                (name, code, message)
                for name, code, message in _topic_errors(response)
                if code not in (0, 36)  # 36: created concurrently by another provisioner
            ]
            if failures:
                raise RuntimeError(f"creating topics failed: {failures}")
            await _wait_until_visible(admin, {topic.name for topic in missing})
        return [topic.name for topic in missing]
    finally:
        await admin.close()


ABANDONED_UPLOAD_RULE: dict[str, Any] = {
    "ID": "abort-abandoned-multipart-uploads",
    "Status": "Enabled",
    "Filter": {"Prefix": ""},
    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABANDONED_MULTIPART_DAYS},
}
"""The rule deploy/s3-lifecycle.json holds too: under the sweep, S3's own backstop."""


async def ensure_bucket(endpoint: S3Endpoint, bucket: str) -> bool:
    """Create the bucket, and give it the abandoned-upload lifecycle rule if it lacks one
    (an existing bucket's other rules are kept); True when the bucket was created."""
    async with open_s3(await warm_session(), endpoint) as s3:
        created = False
        try:
            await s3.head_bucket(Bucket=bucket)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise
            params: dict[str, object] = {"Bucket": bucket}
            if endpoint.region != "us-east-1":
                params["CreateBucketConfiguration"] = {"LocationConstraint": endpoint.region}
            await s3.create_bucket(**params)
            created = True
        try:
            await _ensure_abandoned_upload_rule(s3, bucket)
        except ClientError as error:
            # MinIO refuses this rule (it purges stale multipart uploads by itself, after 24 h).
            log.info("bucket %s keeps no abandoned-upload rule: %s", bucket, error)
        return created


def with_abandoned_upload_rule(rules: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """`rules` with the abandoned-upload rule added (replacing one of the same ID); None when
    an enabled whole-bucket rule already aborts abandoned uploads as soon or sooner."""
    for rule in rules:
        days = rule.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation")
        whole_bucket = rule.get("Filter", {}) in ({}, {"Prefix": ""}) and not rule.get("Prefix")
        if (
            rule.get("Status") == "Enabled"
            and whole_bucket
            and days is not None
            and days <= ABANDONED_MULTIPART_DAYS
        ):
            return None
    kept = [rule for rule in rules if rule.get("ID") != ABANDONED_UPLOAD_RULE["ID"]]
    return [*kept, ABANDONED_UPLOAD_RULE]


async def _ensure_abandoned_upload_rule(s3: Any, bucket: str) -> None:
    try:
        current = await s3.get_bucket_lifecycle_configuration(Bucket=bucket)
        rules: list[dict[str, Any]] = current.get("Rules", [])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
            raise
        rules = []
    merged = with_abandoned_upload_rule(rules)
    if merged is not None:
        await s3.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": merged}
        )


async def _wait_until_visible(admin: AIOKafkaAdminClient, names: set[str]) -> None:
    # A created topic reaches every broker's metadata a moment later; clients started
    # right after provisioning would otherwise be told it does not exist.
    async with asyncio.timeout(TOPIC_VISIBLE_TIMEOUT):
        # The broker offers no notification of this, so it is polled.
        while not all(_has_leaders(t) for t in await admin.describe_topics(sorted(names))):  # noqa: ASYNC110
            await asyncio.sleep(0.1)


def _has_leaders(description: dict[str, Any]) -> bool:
    partitions = description.get("partitions", [])
    return (
        description.get("error_code") == 0
        and bool(partitions)
        and all(p.get("error_code") == 0 and p.get("leader", -1) >= 0 for p in partitions)
    )


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    errors = []
    for entry in getattr(response, "topic_errors", getattr(response, "topic_error_codes", [])):
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        errors.append((name, code, message))
    return errors
