"""Cancels carried to the instance that streams the upload, whichever instance took them.

A cancel is first a change of the session document, which every instance
reads. The instance streaming the upload must also stop it within about a
second. Watching each upload's session document would cost one S3 request per
upload per poll interval: with 1,000 uploads in flight, 2,000 requests a
second, a fifth of the server's CPU and a good share of S3's. So the instance
that took the cancel also drops a marker document, `cancels/<instance>/<session>`,
under the prefix of the instance named in the session as its streamer, and each
instance lists its own prefix once per interval: one request per instance
however many uploads it streams.

A marker is deleted once it has stopped its upload. A marker whose upload is
not (or no longer) here is deleted when a second listing still finds no such
upload: by then an upload claimed just before the cancel has been registered,
and one that ended needs no stopping. Markers addressed to an instance that has
died are never read here: the sweep carries out the cancels they hold and
removes them (`ingest.usecases.sweep`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from infra import layout
from ingest.errors import IngestError, VersionConflict
from ingest.model import UploadSession
from ingest.ports import DocumentStore

log = logging.getLogger(__name__)

StopUpload = Callable[[str], bool]
"""Stops the upload of a session streaming in this process; False when there is none."""


class CancelRelay:
    def __init__(self, documents: DocumentStore, *, instance_id: str, poll_seconds: float) -> None:
        self._documents = documents
        self._instance_id = instance_id
        self._poll_seconds = poll_seconds
        self._inbox = layout.cancels_prefix(instance_id)

    async def forward(self, session: UploadSession) -> None:
        """Tell the instance streaming this cancelled session to stop it, unless that is us."""
        streamer = session.instance_id
        if streamer is None or streamer == self._instance_id:
            return
        with contextlib.suppress(VersionConflict):  # already told
            await self._documents.create(layout.cancel_marker(streamer, session.session_id), b"")

    async def run(self, stop_upload: StopUpload) -> None:
        """Stop the uploads cancelled elsewhere, polling this instance's markers until cancelled."""
        unmatched: set[str] = set()
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                unmatched = await self._deliver(stop_upload, unmatched)
            except IngestError as error:
                log.warning("cannot look for cancelled uploads: %s", error)

    async def _deliver(self, stop_upload: StopUpload, unmatched: set[str]) -> set[str]:
        """One round: stop what the markers name; returns the markers kept for another look."""
        still_unmatched: set[str] = set()
        for key in await self._documents.list_keys(self._inbox):
            session_id = key[len(self._inbox) :]
            if stop_upload(session_id) or key in unmatched:
                await self._documents.delete(key)
            else:
                still_unmatched.add(key)
        return still_unmatched
