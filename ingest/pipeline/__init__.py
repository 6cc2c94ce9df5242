"""The streaming pipeline: request body -> fixed-size parts -> S3 multipart upload, with events.

It sees only the ports of `ingest.ports` (no HTTP, Kafka or S3 client code) and
raises the domain errors of `ingest.errors`. `stream_upload` is the entry point;
the other modules are its parts, usable on their own (the tus handler needs the
format check, the re-buffer and the budget without the whole flow).
"""

from ingest.pipeline.body import MeteredBody, SizeLimits
from ingest.pipeline.budget import MemoryBudget, Reservation
from ingest.pipeline.container import (
    CONTENT_TYPES,
    HEAD_BYTES,
    detect_format,
    normalize_format,
    resolve_format,
)
from ingest.pipeline.hashing import HashChainBroken, StreamHasher, part_checksum
from ingest.pipeline.parts import MAX_PART_SIZE, MAX_PARTS, PartReader, plan_part_size
from ingest.pipeline.progress import ProgressSnapshot, ProgressTracker
from ingest.pipeline.stream import FindDuplicate, Interrupt, PipelineConfig, stream_upload

__all__ = [
    "CONTENT_TYPES",
    "HEAD_BYTES",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "FindDuplicate",
    "HashChainBroken",
    "Interrupt",
    "MemoryBudget",
    "MeteredBody",
    "PartReader",
    "PipelineConfig",
    "ProgressSnapshot",
    "ProgressTracker",
    "Reservation",
    "SizeLimits",
    "StreamHasher",
    "detect_format",
    "normalize_format",
    "part_checksum",
    "plan_part_size",
    "resolve_format",
    "stream_upload",
]
