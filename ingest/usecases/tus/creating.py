"""Creating a tus upload: the creation request admitted, its session document made and stored.

A tus upload is created under the rules every way in shares (size, quota,
format and file name, `ingest.usecases.admission`) and counted in flight on
this instance from then on: a whole upload as an open upload, a partial one
(concatenation) as a piece, whose bytes count against the quota though it is
no upload of its own. `new_session` makes the document of any tus upload,
a final one's too (`joining`): its object key, its expiry, its state.

How it fails: the admission rules' refusals before anything is stored or
counted: TooLarge (413), TooSmall or InvalidRequest (400, an empty partial
upload) for the length, QuotaExceeded (429), FormatNotAllowed (400) for a
file name or media type no session may have; whatever storing the session
raises, with its count in flight given back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from infra import layout
from ingest.auth import Principal
from ingest.pipeline.config import PipelineConfig
from ingest.pipeline.parts import plan_part_size
from ingest.usecases.admission import Admission, UploadLimits
from ingest.usecases.tus.admission import check_partial_length
from ingest.usecases.tus.metadata import declared_from
from ingest.usecases.tus.protocol import Creation
from ingest.usecases.tus.state import TusSession, TusSessions, TusState


class UploadCreator:
    def __init__(
        self,
        *,
        sessions: TusSessions,
        rules: Admission,
        limits: UploadLimits,
        pipeline: PipelineConfig,
        instance_id: str,
        session_ttl: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._sessions = sessions
        self._rules = rules
        self._limits = limits
        self._pipeline = pipeline
        self._instance_id = instance_id
        self._session_ttl = session_ttl
        self._clock = clock

    async def create(self, principal: Principal, creation: Creation) -> TusSession:
        length = creation.length
        if creation.partial:
            check_partial_length(length, self._limits.max_size)
        else:
            self._rules.check_upload_length(length)
        self._rules.check_quota(principal.user_id, length, new_upload=True)
        declared = declared_from(creation.metadata)
        # The same format and file name policy as any other session.
        file_format = self._rules.requested_format(
            declared.file_format, declared.filename, field="Upload-Metadata"
        )
        session_id = uuid.uuid4().hex
        if creation.partial:
            # Its bytes count against the quota, but it is no upload of its own.
            self._rules.in_flight.hold(principal.user_id, session_id, length, piece=True)
        else:
            # Checked again and held with no await between: open uploads count on this instance.
            self._rules.admit(principal.user_id, session_id, length)
        session = self.new_session(
            principal,
            session_id,
            creation,
            file_format,
            TusState(
                upload_length=length,
                part_size=plan_part_size(length, self._pipeline.part_size, self._limits.max_size),
                video_id=str(uuid.uuid4()),
                analysis_id=str(uuid.uuid4()),
                metadata_header=creation.metadata_header,
                concat="partial" if creation.partial else None,
            ),
        )
        try:
            await self._sessions.create(session)
        except BaseException:
            self._rules.in_flight.release(session_id)
            raise
        return session

    def new_session(
        self,
        principal: Principal,
        session_id: str,
        creation: Creation,
        file_format: str | None,
        state: TusState,
        message: str = "waiting for the first bytes",
    ) -> TusSession:
        declared = declared_from(creation.metadata)
        now = self._clock()
        # A partial upload's object is a piece, not a file of the user's: kept beside the tails.
        key = (
            layout.tus_partial_key(session_id)
            if state.concat == "partial"
            else layout.object_key(principal.user_id, session_id, declared.filename)
        )
        return TusSession(
            session_id=session_id,
            user_id=principal.user_id,
            filename=declared.filename,
            expected_file_size=state.upload_length,
            file_format=file_format,
            file_hash=None,
            auto_analyze=declared.auto_analyze,
            priority=declared.priority,
            metadata=dict(creation.metadata),
            dashboard_context=None,
            protocol="tus",
            s3_key=key,
            created_at=now,
            expires_at=now + timedelta(seconds=self._session_ttl),
            # Never "active": the one-shot PUT must not claim a tus upload.
            status="uploading",
            message=message,
            instance_id=self._instance_id,
            updated_at=now,
            tus=state,
        )
