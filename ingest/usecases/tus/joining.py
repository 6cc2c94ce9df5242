"""Starting a final tus upload and running its join: its partial uploads checked, the copies
planned, the file judged, the quota charged once, the partial uploads claimed, the final's
session created, the join run.

Everything that can refuse a final is done here, before any of its bytes are
copied, so a refused final changes nothing: its partial uploads stay as they
were, to be joined by a corrected request. What follows (the copies, the
record, the events) is `final.FinalJoin`'s, which `run_final` runs under the
final's lease as the request's own task (`leased.LeasedRunner`), counting
the final's bytes in flight once it completes, the partial uploads' again if
it does not.

How it fails: the refusals of `partials` and `concat` (404, 400), of the
admission rules (413, 400, 415 for a file that is not an allowed video, 429),
InvalidConcat (400) on a store that cannot copy parts; whatever storing the
session raises, with the claims given back. `run_final` raises ServiceUnavailable
(503) when the server began to shut down before the join (the final then
ended, its partial uploads given back), and what `FinalJoin.run` raises.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from ingest.auth import Principal
from ingest.errors import InvalidConcat
from ingest.pipeline.config import PipelineConfig
from ingest.pipeline.container import CONTENT_TYPES
from ingest.ports import PartCopying
from ingest.usecases.admission import Admission, UploadLimits
from ingest.usecases.inflight import InFlightUploads
from ingest.usecases.tus.body import TusInterrupt
from ingest.usecases.tus.concat import plan_copies
from ingest.usecases.tus.creating import UploadCreator
from ingest.usecases.tus.final import FinalJoin, judge_head
from ingest.usecases.tus.lease import SEQUENCE_BLOCK, Held
from ingest.usecases.tus.leased import LeasedRunner
from ingest.usecases.tus.lifecycle import Lifecycle
from ingest.usecases.tus.metadata import declared_from
from ingest.usecases.tus.partials import claim, find_partials, give_back, pieces_of
from ingest.usecases.tus.protocol import Concat, Creation
from ingest.usecases.tus.state import TusLease, TusSession, TusSessions, TusState
from ingest.usecases.tus.store import TusStore

if TYPE_CHECKING:
    from ingest.usecases.tus.service import TusConfig


class FinalStarter(Protocol):
    """What starting a final needs from the tus service (named here, not imported)."""

    sessions: TusSessions
    lifecycle: Lifecycle
    store: TusStore
    creator: UploadCreator
    rules: Admission
    limits: UploadLimits
    pipeline: PipelineConfig

    @property
    def config(self) -> TusConfig: ...

    @property
    def instance_id(self) -> str: ...

    def wall_clock(self) -> datetime: ...


async def prepare_final(
    service: FinalStarter, principal: Principal, creation: Creation, concat: Concat
) -> FinalJoin:
    """The final's session, created and leased, and the join that remains to run."""
    if not isinstance(service.store, PartCopying):
        raise InvalidConcat("this server's storage cannot join uploads")
    config, rules = service.config, service.rules
    now = service.wall_clock()
    references = concat.references
    partials = await find_partials(service.sessions, references, principal, now)
    copies = plan_copies(pieces_of(partials, references), config.join)
    length = sum(partial.state.offset for partial in partials)
    rules.check_upload_length(length)
    declared = declared_from(creation.metadata)
    file_format = rules.requested_format(
        declared.file_format, declared.filename, field="Upload-Metadata"
    )
    fmt = await judge_head(
        service.store,
        partials[0].s3_key,
        declared=file_format,
        allowed=service.limits.allowed_formats,
    )
    final_id = uuid.uuid4().hex
    admit_final(rules, principal.user_id, final_id, partials, length)
    owner = uuid.uuid4().hex
    lease = TusLease(
        owner=owner,
        instance_id=service.instance_id,
        expires_at=now + timedelta(seconds=config.lease.lease_seconds),
    )
    session = service.creator.new_session(
        principal,
        final_id,
        creation,
        file_format,
        TusState(
            upload_length=length,
            part_size=service.pipeline.part_size,
            video_id=str(uuid.uuid4()),
            analysis_id=str(uuid.uuid4()),
            metadata_header=creation.metadata_header,
            format=fmt,
            content_type=CONTENT_TYPES.get(fmt),
            started_at=now,
            # Numbers 0 onwards are this request's, as if it had taken the lease.
            next_sequence=SEQUENCE_BLOCK,
            lease=lease,
            concat="final",
            partials=tuple(partial.session_id for partial in partials),
            concat_header=concat.header,
        ),
        message=f"joining {len(partials)} partial uploads",
    )
    claimed: list[TusSession] = []
    try:
        until = now + timedelta(seconds=config.session_ttl_seconds)
        claimed = await claim(
            service.sessions,
            partials,
            references,
            final_id,
            until=until,
            clock=service.wall_clock,
        )
        await service.sessions.create(session)
    except BaseException:
        await give_back(service.sessions, claimed, final_id)
        refuse_final(rules.in_flight, final_id, partials)
        raise
    events = service.lifecycle.events_for(session, 0)
    return FinalJoin(service, Held(session, owner, 0), events, claimed, copies, config.join)


async def run_final(
    join: FinalJoin, runner: LeasedRunner, in_flight: InFlightUploads
) -> TusSession:
    """The completed final, once its file is stored and reported."""
    session_id = join.session_id
    if runner.draining:
        # The server began to shut down meanwhile: end the final, give its pieces back.
        await join.abandon()
        refuse_final(in_flight, session_id, join.partials)
        runner.refuse_when_draining()
    completed: TusSession | None = None
    try:
        completed = await runner.run(
            join.run(),
            name=f"tus-final-{session_id}",
            held=join.held,
            events=join.events,
            interrupt=TusInterrupt(),
        )
        return completed
    finally:
        if completed is not None:
            in_flight.settled(session_id, completed.bytes_received)
        else:
            refuse_final(in_flight, session_id, join.partials)


def admit_final(
    rules: Admission, user_id: str, final_id: str, partials: Sequence[TusSession], length: int
) -> None:
    """Count the final once, as one upload, in place of its partial uploads' bytes (no await
    between, so no other request sees the bytes counted twice or not at all)."""
    for partial in partials:
        rules.in_flight.release(partial.session_id)
    try:
        rules.admit(user_id, final_id, length)
    except BaseException:
        refuse_final(rules.in_flight, final_id, partials)
        raise


def refuse_final(in_flight: InFlightUploads, final_id: str, partials: Sequence[TusSession]) -> None:
    """The final did not happen: its partial uploads' bytes count again, as pieces."""
    in_flight.release(final_id)
    for partial in partials:
        in_flight.hold(partial.user_id, partial.session_id, partial.state.offset, piece=True)
