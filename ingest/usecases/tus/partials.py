"""The partial uploads a final upload names: found, checked, claimed, then consumed or given back.

A partial upload is an ordinary tus upload with `concat="partial"`: it stores
its bytes as one object (`TusState.stored`) and waits, "uploading", until a
final upload joins it or it expires. A final claims each of its partial
uploads (`joined_into`, by compare-and-swap, so two finals never share one),
and once it is recorded complete consumes them: their objects are deleted and
they are marked completed, without events (they never emitted any). A final
that fails gives its partial uploads back, to be joined again.

Refusals, each the same whichever instance answers: PartialUploadNotFound
(404) for a URL that names no upload of the caller's (unknown and another
user's alike, so nobody learns of another's uploads), InvalidConcat (400)
for one that is not a partial upload, is listed twice, ended, or is claimed
by another final, PartialUploadNotFinished (400) for one not stored whole yet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

import msgspec

from ingest.auth import Principal
from ingest.errors import (
    IngestError,
    InvalidConcat,
    PartialUploadNotFinished,
    PartialUploadNotFound,
    SessionNotFound,
)
from ingest.usecases.tus.concat import Piece
from ingest.usecases.tus.protocol import upload_id_of
from ingest.usecases.tus.state import TusSession, TusSessions, with_state
from ingest.usecases.tus.store import TusStore

log = logging.getLogger(__name__)


async def find_partials(
    sessions: TusSessions, references: Sequence[str], principal: Principal, now: datetime
) -> list[TusSession]:
    """The caller's partial uploads the references name, in order, each ready to be joined."""
    found: list[TusSession] = []
    seen: set[str] = set()
    for reference in references:
        upload_id = upload_id_of(reference)
        if upload_id in seen:
            raise InvalidConcat(
                f"partial upload {reference} is listed twice",
                details={"header": "Upload-Concat", "partial": reference},
            )
        session = await _owned(sessions, reference, upload_id, principal)
        check_joinable(session, reference, now)
        seen.add(session.session_id)
        found.append(session)
    return found


async def _owned(
    sessions: TusSessions, reference: str, upload_id: str | None, principal: Principal
) -> TusSession:
    not_found = PartialUploadNotFound(
        f"no upload of yours at {reference}",
        details={"header": "Upload-Concat", "partial": reference},
    )
    if upload_id is None:
        raise not_found
    try:
        session, _ = await sessions.load(upload_id)
    except SessionNotFound:
        raise not_found from None
    # Not even an admin's: the final is the caller's file, made of the caller's bytes.
    if session.user_id != principal.user_id:
        raise not_found
    return session


def check_joinable(
    session: TusSession, reference: str, now: datetime, final_id: str | None = None
) -> None:
    """Whether `session` may be joined now (into `final_id`, when it claimed it already)."""
    state = session.tus
    details: dict[str, object] = {"header": "Upload-Concat", "partial": reference}
    if state is None or state.concat != "partial":
        raise InvalidConcat(
            f"{reference} is not a partial upload (create those with Upload-Concat: partial)",
            details=details,
        )
    if state.joined_into is not None and state.joined_into != final_id:
        raise InvalidConcat(
            f"partial upload {reference} is joined into another final upload", details=details
        )
    ended = session.status if session.status != "uploading" else None
    if ended is None and now >= session.expires_at and state.joined_into is None:
        ended = "expired"  # not yet marked so; the next request or sweep will
    if ended is not None:
        raise InvalidConcat(f"partial upload {reference} is {ended}", details=details)
    if not state.stored:
        length = "?" if state.upload_length is None else str(state.upload_length)
        raise PartialUploadNotFinished(
            f"partial upload {reference} has {state.offset} of {length} bytes; "
            "finish it before joining it",
            details={**details, "offset": state.offset, "upload_length": state.upload_length},
        )


def pieces_of(partials: Sequence[TusSession], references: Sequence[str]) -> list[Piece]:
    return [
        Piece(reference=reference, key=session.s3_key, size=session.state.offset)
        for session, reference in zip(partials, references, strict=True)
    ]


async def claim(
    sessions: TusSessions,
    partials: Sequence[TusSession],
    references: Sequence[str],
    final_id: str,
    *,
    until: datetime,
    clock: Callable[[], datetime],
) -> list[TusSession]:
    """Mark every partial upload as being joined into `final_id`, kept at least `until`;
    all or none (what was claimed is given back when one cannot be)."""
    claimed: list[TusSession] = []
    try:
        for session, reference in zip(partials, references, strict=True):

            def take(current: TusSession, reference: str = reference) -> TusSession | None:
                check_joinable(current, reference, clock(), final_id)
                if current.state.joined_into == final_id:
                    return None
                kept = msgspec.structs.replace(current, expires_at=max(current.expires_at, until))
                return with_state(kept, joined_into=final_id)

            claimed.append(await sessions.mutate(session.session_id, take))
    except BaseException:
        await give_back(sessions, claimed, final_id)
        raise
    return claimed


async def give_back(sessions: TusSessions, partials: Sequence[TusSession], final_id: str) -> None:
    """The final did not complete: its partial uploads may be joined again."""

    def release(current: TusSession) -> TusSession | None:
        state = current.tus
        if state is None or state.joined_into != final_id or current.status != "uploading":
            return None
        return with_state(current, joined_into=None)

    for session in partials:
        try:
            await sessions.mutate(session.session_id, release)
        except IngestError as error:
            # It stays claimed until it expires, then is cleaned like any expired upload.
            log.warning("could not give back partial upload %s: %s", session.session_id, error)


async def consume(
    sessions: TusSessions, store: TusStore, partials: Sequence[TusSession], final_id: str
) -> None:
    """The final is recorded: delete each partial upload's object and mark it completed.

    One whose object cannot be deleted stays as it is, claimed: it expires, and its
    expiry removes the object (`Lifecycle.clean_up`).
    """

    def consumed(current: TusSession) -> TusSession | None:
        state = current.tus
        if state is None or state.joined_into != final_id or current.status != "uploading":
            return None
        joined = msgspec.structs.replace(
            current, status="completed", message=f"joined into upload {final_id}"
        )
        return with_state(joined, lease=None, cleaned=True)

    for session in partials:
        try:
            await store.delete(session.s3_key)
            await sessions.mutate(session.session_id, consumed)
        except IngestError as error:
            log.warning("partial upload %s is left to expire: %s", session.session_id, error)
