"""Joining stored objects into one by copying them inside the store, as S3 allows it.

A final tus upload is its partial uploads' objects, in order. S3 can assemble
that without a byte passing through this service: a new multipart upload whose
parts are copies of those objects (UploadPartCopy). S3's rules for any
multipart upload decide what can be joined: every part but the last at least
5 MiB, none over 5 GiB, at most 10,000. So a partial upload other than the
last must hold at least 5 MiB (one smaller is refused when the final is
created: copying byte ranges across objects to fill parts would mean reading
them back through the service), and one over 5 GiB is copied as several
ranges of equal size.

How it fails: `plan_copies` raises PartialUploadTooSmall or InvalidConcat
(400) for pieces S3 would refuse to join; `copy_all` raises what the store
raises for the first copy that fails, once the others have stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from ingest.errors import InvalidConcat, PartialUploadTooSmall
from ingest.ports import CopyingMultipartUpload, StoredPart

MiB = 1024 * 1024


@dataclass(frozen=True)
class JoinLimits:
    """S3's multipart limits, which the store enforces on a joined object too."""

    min_part: int = 5 * MiB
    max_part: int = 5 * 1024 * MiB
    max_parts: int = 10_000
    copies_at_once: int = 4


@dataclass(frozen=True)
class Piece:
    """One partial upload's stored object, as the final upload uses it."""

    reference: str
    """How the client named it, for error messages."""
    key: str
    size: int


@dataclass(frozen=True)
class Copy:
    number: int
    source_key: str
    byte_range: tuple[int, int] | None
    """None: the whole object (S3 copies a range only out of an object over 5 MiB)."""


def plan_copies(pieces: Sequence[Piece], limits: JoinLimits) -> list[Copy]:
    """The part copies that make the joined object: one per piece, or equal ranges of one
    over `max_part`."""
    copies: list[Copy] = []
    for index, piece in enumerate(pieces):
        if index < len(pieces) - 1 and piece.size < limits.min_part:
            raise PartialUploadTooSmall(
                f"partial upload {piece.reference} holds {piece.size} bytes; every partial "
                f"upload but the last must hold at least {limits.min_part} bytes",
                details={"partial": piece.reference, "size": piece.size, "min": limits.min_part},
            )
        count = -(-piece.size // limits.max_part)
        if count <= 1:
            copies.append(Copy(len(copies) + 1, piece.key, None))
            continue
        step = -(-piece.size // count)
        for start in range(0, piece.size, step):
            end = min(start + step, piece.size)
            copies.append(Copy(len(copies) + 1, piece.key, (start, end)))
    if len(copies) > limits.max_parts:
        raise InvalidConcat(
            f"these partial uploads would make {len(copies)} parts; at most "
            f"{limits.max_parts} can be joined",
            details={"parts": len(copies), "max_parts": limits.max_parts},
        )
    return copies


async def copy_all(
    target: CopyingMultipartUpload, copies: Sequence[Copy], *, at_once: int
) -> list[StoredPart]:
    """Run every copy into `target`, `at_once` at a time; the parts in number order."""
    limit = asyncio.Semaphore(at_once)

    async def one(copy: Copy) -> StoredPart:
        async with limit:
            return await target.copy_part(copy.number, copy.source_key, copy.byte_range)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(copy)) for copy in copies]
    except ExceptionGroup as failed:
        # The first failure is the one to report; the others stopped because of it.
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]
