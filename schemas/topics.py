"""Kafka topics as plain data: names, keys, partition counts and configurations.

Provisioning creates topics from `Topics.specs()`, producers route with
`topic_for`, the AsyncAPI document lists each topic's types with
`event_types_on`. Nothing here talks to Kafka. A prefix that Kafka would refuse
as part of a topic name raises ValueError when `Topics` is built; `topic_for`
raises KeyError for an event type that has no topic.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from schemas.events import (
    DetectionCompleted,
    DetectionFailed,
    QuotaLimitsSet,
    QuotaUpdated,
    UploadCancelled,
    UploadCompleted,
    UploadFailed,
    UploadProgress,
    UploadStarted,
    event_type,
)

__all__ = ["DEFAULT_PREFIX", "TOPIC_SPECS", "TopicSpec", "Topics", "event_types_on", "topic_for"]

DEFAULT_PREFIX: Final = "ingest."

_HOUR_MS: Final = 60 * 60 * 1000
_DAY_MS: Final = 24 * _HOUR_MS

# The topics keyed by user_id share one partition count so that a user lands on
# the same partition number in each: a consumer of several of them (the quota
# ledger reads uploads and quota.commands and writes quota) then sees each
# user's inputs on partitions it owns together.
_USER_KEYED_PARTITIONS: Final = 12


@dataclass(frozen=True, kw_only=True)
class TopicSpec:
    """One topic: its name after the prefix, what keys it, and how it is created.

    `config` holds Kafka topic configurations; it is read-only because the
    specs are module-level values shared by every caller.
    """

    suffix: str
    key: str
    partitions: int
    config: Mapping[str, str]
    description: str


def _spec(
    suffix: str, key: str, partitions: int, description: str, config: dict[str, str]
) -> TopicSpec:
    return TopicSpec(
        suffix=suffix,
        key=key,
        partitions=partitions,
        config=MappingProxyType(config),
        description=description,
    )


TOPIC_SPECS: Final[tuple[TopicSpec, ...]] = (
    _spec(
        "uploads",
        "user_id",
        _USER_KEYED_PARTITIONS,
        "upload lifecycle: started, completed, failed, cancelled",
        {"cleanup.policy": "delete", "retention.ms": str(90 * _DAY_MS)},
    ),
    _spec(
        "progress",
        "upload_id",
        12,
        "upload progress; only the latest state of a recent upload matters",
        # compact keeps the last progress of each upload, delete drops uploads
        # older than an hour; short segments let both happen soon, since Kafka
        # never cleans the segment being written.
        {
            "cleanup.policy": "compact,delete",
            "retention.ms": str(_HOUR_MS),
            "segment.ms": str(10 * 60 * 1000),
        },
    ),
    _spec(
        "detections",
        "user_id",
        _USER_KEYED_PARTITIONS,
        "results of the validation and analysis of stored videos",
        {"cleanup.policy": "delete", "retention.ms": str(90 * _DAY_MS)},
    ),
    _spec(
        "quota",
        "user_id",
        _USER_KEYED_PARTITIONS,
        "latest quota snapshot per user, read by every ingest instance",
        # Compacted: a reader rebuilds every user's current state from it. Daily
        # segments, so superseded snapshots are compacted away at least daily.
        {"cleanup.policy": "compact", "segment.ms": str(_DAY_MS)},
    ),
    _spec(
        "quota.commands",
        "user_id",
        _USER_KEYED_PARTITIONS,
        "admin commands setting users' quota limits",
        # Kept forever: it is the only record of the limits admins set, and tiny.
        {"cleanup.policy": "delete", "retention.ms": "-1"},
    ),
    _spec(
        "dlq",
        "the original record's key",
        3,
        "records a consumer gave up on, the error in their headers",
        {"cleanup.policy": "delete", "retention.ms": str(90 * _DAY_MS)},
    ),
)

_SPECS_BY_SUFFIX: Final = {spec.suffix: spec for spec in TOPIC_SPECS}

_ROUTES: Final[dict[str, str]] = {
    event_type(UploadStarted): "uploads",
    event_type(UploadCompleted): "uploads",
    event_type(UploadFailed): "uploads",
    event_type(UploadCancelled): "uploads",
    event_type(UploadProgress): "progress",
    event_type(DetectionCompleted): "detections",
    event_type(DetectionFailed): "detections",
    event_type(QuotaUpdated): "quota",
    event_type(QuotaLimitsSet): "quota.commands",
}

# Legal characters of a Kafka topic name; names are at most 249 characters.
_LEGAL_NAME = re.compile(r"[A-Za-z0-9._-]*")
_LONGEST_SUFFIX: Final = max(len(spec.suffix) for spec in TOPIC_SPECS)


@dataclass(frozen=True)
class Topics:
    """The full topic names of one deployment, all sharing `prefix`."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not _LEGAL_NAME.fullmatch(self.prefix):
            raise ValueError(
                f"topic prefix {self.prefix!r} may only contain letters, digits, '.', '_' and '-'"
            )
        if len(self.prefix) + _LONGEST_SUFFIX > 249:
            raise ValueError(f"topic prefix {self.prefix!r} makes topic names over 249 characters")

    @property
    def uploads(self) -> str:
        return self.prefix + "uploads"

    @property
    def progress(self) -> str:
        return self.prefix + "progress"

    @property
    def detections(self) -> str:
        return self.prefix + "detections"

    @property
    def quota(self) -> str:
        return self.prefix + "quota"

    @property
    def quota_commands(self) -> str:
        return self.prefix + "quota.commands"

    @property
    def dlq(self) -> str:
        return self.prefix + "dlq"

    def name(self, suffix: str) -> str:
        """The full name of the topic with this suffix (`"quota.commands"`); KeyError if none."""
        return self.prefix + _SPECS_BY_SUFFIX[suffix].suffix

    def specs(self) -> list[tuple[str, TopicSpec]]:
        """(full name, spec) for every topic, in a stable order."""
        return [(self.prefix + spec.suffix, spec) for spec in TOPIC_SPECS]


def event_types_on(suffix: str) -> list[str]:
    """The CloudEvents types published on the topic with this suffix, in a stable order.

    Empty for a topic that carries no event type of its own (the DLQ).
    """
    return [tag for tag, routed_to in _ROUTES.items() if routed_to == suffix]


def topic_for(event_type_tag: str, topics: Topics) -> str:
    """The full name of the topic that carries events of this CloudEvents type.

    Raises KeyError for a type this version does not know: publishing it
    somewhere arbitrary would hide the mistake.
    """
    try:
        suffix = _ROUTES[event_type_tag]
    except KeyError:
        raise KeyError(f"no topic for event type {event_type_tag!r}") from None
    return topics.name(suffix)
