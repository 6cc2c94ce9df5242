"""The streaming pipeline: request body -> fixed-size parts -> S3 multipart upload, with events.

It sees only the ports of `ingest.ports` (no HTTP, Kafka or S3 client code) and
raises the domain errors of `ingest.errors`. `stream_upload` (`stream`) is the
one-shot upload end to end; its pieces serve every way in: the part engine
(`engine`), the lifecycle events (`events`), the last steps (`ending`), the
format check, the re-buffer and the budget (a tus PATCH uses them without the
whole flow).
"""

from ingest.pipeline.body import MeteredBody, SizeLimits
from ingest.pipeline.budget import MemoryBudget, Reservation
from ingest.pipeline.config import PipelineConfig
from ingest.pipeline.container import (
    CONTENT_TYPES,
    HEAD_BYTES,
    detect_format,
    normalize_format,
    resolve_format,
)
from ingest.pipeline.ending import ClaimOriginal, run_to_end, settle_duplicate
from ingest.pipeline.engine import PartEngine, PartHasher, Piece
from ingest.pipeline.events import BuildEvent, EventWriter, UploadFields
from ingest.pipeline.hashing import HashChainBroken, PartChecksums, StreamHasher, part_checksum
from ingest.pipeline.parts import MAX_PART_SIZE, MAX_PARTS, PartReader, plan_part_size
from ingest.pipeline.progress import ProgressSnapshot, ProgressTracker
from ingest.pipeline.stream import Interrupt, stream_upload

__all__ = [
    "CONTENT_TYPES",
    "HEAD_BYTES",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "BuildEvent",
    "ClaimOriginal",
    "EventWriter",
    "HashChainBroken",
    "Interrupt",
    "MemoryBudget",
    "MeteredBody",
    "PartChecksums",
    "PartEngine",
    "PartHasher",
    "PartReader",
    "Piece",
    "PipelineConfig",
    "ProgressSnapshot",
    "ProgressTracker",
    "Reservation",
    "SizeLimits",
    "StreamHasher",
    "UploadFields",
    "detect_format",
    "normalize_format",
    "part_checksum",
    "plan_part_size",
    "resolve_format",
    "run_to_end",
    "settle_duplicate",
    "stream_upload",
]
