"""The detection results kept as small JSON documents, per user: by video and by file hash.

Two documents (keys from `infra.layout`, which encode the user injectively):

* by video id: `schemas.api.VideoResults`, what the results page shows. It
  is written `pending` (or `not_requested`) as soon as the upload's
  completion is read, then with the outcome event, which it keeps whole:
  a record read again re-publishes that same event (same `event_id`, so
  downstream de-duplicates) instead of analysing again.
* by SHA-256: the last `ingest.detection.completed` of that file, reused for
  a later upload of the same file by the same user (never across users:
  whether another user stored a file would leak through the reuse).

How it fails: the document store's errors pass through (ServiceUnavailable
is retriable); a document that no longer decodes is treated as absent and
written again (it is derived data).
"""

from __future__ import annotations

import logging
from typing import TypeVar

import msgspec

from infra.layout import detection_by_sha256, detection_by_video
from infra.objects import Documents
from schemas import DetectionCompleted
from schemas.api import VideoResults

log = logging.getLogger(__name__)

T = TypeVar("T")
_encoder = msgspec.json.Encoder()


async def _read(documents: Documents, key: str, kind: type[T]) -> T | None:
    data = await documents.read(key)
    if data is None:
        return None
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as error:
        log.warning("ignoring the unreadable detection document %s: %s", key, error)
        return None


class Outcomes:
    def __init__(self, documents: Documents) -> None:
        self._documents = documents

    async def of_video(self, user_id: str, video_id: str) -> VideoResults | None:
        return await _read(self._documents, detection_by_video(user_id, video_id), VideoResults)

    async def save_video(self, user_id: str, results: VideoResults) -> None:
        key = detection_by_video(user_id, results.video_id)
        await self._documents.write(key, _encoder.encode(results))

    async def of_file(self, user_id: str, sha256: str) -> DetectionCompleted | None:
        key = detection_by_sha256(user_id, sha256)
        return await _read(self._documents, key, DetectionCompleted)

    async def save_file(self, user_id: str, outcome: DetectionCompleted) -> None:
        key = detection_by_sha256(user_id, outcome.sha256)
        await self._documents.write(key, _encoder.encode(outcome))
