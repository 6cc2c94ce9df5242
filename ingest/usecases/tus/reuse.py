"""Pieces of the pipeline and of the session service that tus reuses before they are public.

Each name is private where it lives. Importing them here, in one place, keeps
that dependency visible and one edit away from going once they are made public
(an `EventWriter` in the pipeline, `SessionService.load_raw` / `check_owner`).
Fails at import time, never later, if one of them is renamed.
"""

from __future__ import annotations

from ingest.pipeline.stream import _EventWriter as EventWriter
from ingest.pipeline.stream import _finish as run_to_end
from ingest.pipeline.stream import _UploadFields as UploadFields
from ingest.usecases.sessions import check_owner, session_key

__all__ = ["EventWriter", "UploadFields", "check_owner", "run_to_end", "session_key"]
