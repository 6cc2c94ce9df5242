"""The bucket layout: every key the service writes, and the one place a user id becomes a key.

User ids are whatever the identity provider puts in `sub` (`auth0|42`,
`team/X`, ` alice`, `..`), and two different ids must never share a key:
storage derived from a user id is what keeps users apart. `user_segment`
encodes an id injectively into one path segment: letters, digits, `-` and
`_` stay as they are (keys stay readable), every other byte of the UTF-8 is
percent-encoded (`.` included, so `.` and `..` never become path segments),
and an encoding longer than `MAX_READABLE_SEGMENT` becomes `~` followed by
the SHA-256 of the id, which no readable encoding can equal (`~` is always
encoded) and keeps every key well under S3's 1,024 bytes.

State documents (sessions, indexes, cancel markers, instance heartbeats) live under
`STATE_PREFIX`; the document stores are rooted there, so their keys below are
relative to it. Stored files live under `UPLOADS_PREFIX`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from urllib.parse import quote

STATE_PREFIX = "_ingest/"
UPLOADS_PREFIX = "dashboard-uploads/"
TUS_PREFIX = f"{STATE_PREFIX}tus/"

MAX_USER_ID_LENGTH = 256
MAX_READABLE_SEGMENT = 120
_HASHED_MARK = "~"
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")
_KEPT_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _percent_encode(text: str) -> str:
    return "".join(
        chr(byte) if byte in _KEPT_BYTES else f"%{byte:02X}" for byte in text.encode("utf-8")
    )


def user_segment(user_id: str) -> str:
    """One key segment naming this user and no other."""
    readable = _percent_encode(user_id)
    if len(readable) <= MAX_READABLE_SEGMENT:
        return readable
    return _HASHED_MARK + hashlib.sha256(user_id.encode("utf-8")).hexdigest()


def safe_filename(filename: str | None, fallback: str = "upload") -> str:
    """A file name safe in an S3 key and a URL: ASCII letters, digits, dot, dash, underscore.

    Lossy on purpose (it is only the last segment of a key that the upload id
    already makes unique); the original name travels in the session and events.
    """
    if not filename:
        return fallback
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    ascii_name = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    cleaned = _UNSAFE_FILENAME.sub("_", ascii_name).strip("._")
    return cleaned[:200] or fallback


def object_key(user_id: str, upload_id: str, filename: str | None) -> str:
    """Where a stored file lives in the bucket."""
    return f"{UPLOADS_PREFIX}{user_segment(user_id)}/{upload_id}/{safe_filename(filename)}"


def object_metadata(*, upload_id: str, user_id: str, file_format: str | None) -> dict[str, str]:
    """The user metadata stored with a file. S3 metadata must be ASCII, so the user id is
    percent-encoded (`urllib.parse.unquote` gives it back exactly)."""
    return {
        "upload-id": upload_id,
        "user-id": quote(user_id, safe=""),
        "format": file_format or "",
    }


def tus_tail_key(session_id: str, offset: int) -> str:
    """Where a resumable upload kept the bytes after its last full part at this offset,
    as one object (documents written before tails were kept in segments)."""
    return f"{TUS_PREFIX}{session_id}/tail-{offset}"


def tus_segment_key(session_id: str, start: int, end: int) -> str:
    """Where a resumable upload keeps bytes [start, end) of its tail (see `tus.tail`)."""
    return f"{TUS_PREFIX}{session_id}/tail-{start}-{end}"


def tus_partial_key(session_id: str) -> str:
    """Where a partial upload (tus concatenation) keeps its bytes until a final joins them."""
    return f"{TUS_PREFIX}{session_id}/partial"


# Keys of the document store, relative to STATE_PREFIX.


SESSIONS_PREFIX = "sessions/"
SESSION_SUFFIX = ".json"


def session_document(session_id: str) -> str:
    return f"{SESSIONS_PREFIX}{session_id}{SESSION_SUFFIX}"


def user_sessions_prefix(user_id: str) -> str:
    return f"users/{user_segment(user_id)}/"


def user_session_entry(user_id: str, session_id: str) -> str:
    return user_sessions_prefix(user_id) + session_id


def stored_file_document(user_id: str, sha256: str) -> str:
    return f"hashes/{user_segment(user_id)}/{sha256.lower()}.json"


def open_sessions_prefix() -> str:
    """Sessions not yet ended and cleaned: what the sweep looks at, not every session ever."""
    return "open/"


def open_session_entry(session_id: str) -> str:
    return open_sessions_prefix() + session_id


def instance_segment(instance_id: str) -> str:
    """One key segment naming this instance (ids are injectively encoded, like user ids)."""
    return _percent_encode(instance_id)


def instances_prefix() -> str:
    return "instances/"


def instance_heartbeat(instance_id: str) -> str:
    return instances_prefix() + instance_segment(instance_id)


def all_cancels_prefix() -> str:
    return "cancels/"


def cancels_prefix(instance_id: str) -> str:
    return f"{all_cancels_prefix()}{instance_segment(instance_id)}/"


def cancel_marker(instance_id: str, session_id: str) -> str:
    return cancels_prefix(instance_id) + session_id


# Detection results, one small JSON document per analysed file and per video, per user.
# Relative to STATE_PREFIX like the documents above. Video ids come from requests too, so
# they are percent-encoded like user ids: no id can name another user's or another kind's key.


def detection_by_sha256(user_id: str, sha256: str) -> str:
    """The reusable outcome of analysing this user's file with this SHA-256."""
    return f"detections/{user_segment(user_id)}/sha256/{sha256.lower()}.json"


def detection_by_video(user_id: str, video_id: str) -> str:
    """What the results page of this user's video shows: the upload's facts and its outcome."""
    return f"detections/{user_segment(user_id)}/videos/{user_segment(video_id)}.json"
