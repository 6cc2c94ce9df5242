"""Integrity fields of an upload: `Repr-Digest` and `Content-Digest` (RFC 9530).

Each is a structured-field dictionary (RFC 9651) from an algorithm to the
digest as a byte sequence, e.g. `Repr-Digest: sha-256=:X48E9q...=:`; parsing is
`http_sf`'s (the reference implementation of RFC 9651, by its editor). For a raw
body sent whole (no Content-Encoding, no range) both digests cover exactly the
bytes stored, so a `sha-256` member is held against the file's SHA-256 like a
session's `file_hash`.

How it fails: a field that is not a valid dictionary, or whose `sha-256` is not
a 32-byte byte sequence, raises InvalidRequest (400) naming the field; members
for other algorithms are ignored, as RFC 9530 lets a recipient do; a body with a
Content-Encoding has its digests ignored (they cover the encoded bytes, which
are not what is stored).
"""

from __future__ import annotations

import http_sf
from multidict import CIMultiDictProxy

from ingest.errors import InvalidRequest

FIELDS = ("Repr-Digest", "Content-Digest")
ALGORITHM = "sha-256"
SHA256_BYTES = 32


def declared_sha256(headers: CIMultiDictProxy[str]) -> frozenset[str]:
    """The SHA-256 digests (lower-case hex) the request's integrity fields declare for its body."""
    if headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        return frozenset()
    found: set[str] = set()
    for name in FIELDS:
        lines = headers.getall(name, [])
        if lines:
            digest = _sha256_member(name, ", ".join(lines))
            if digest is not None:
                found.add(digest)
    return frozenset(found)


def _sha256_member(name: str, value: str) -> str | None:
    try:
        members = http_sf.parse(value.encode("latin-1"), tltype="dictionary")
    except (http_sf.StructuredFieldError, UnicodeEncodeError) as error:
        raise InvalidRequest(
            f"{name} is not a structured-field dictionary such as "
            f"`{ALGORITHM}=:<base64 digest>:` ({error})",
            details={"field": name},
        ) from None
    assert isinstance(members, dict)
    member = members.get(ALGORITHM)
    if member is None:
        return None
    # (value, parameters) for a member: an inner list or an item; its parameters are not used.
    digest = member[0] if isinstance(member, tuple) else member
    if not isinstance(digest, bytes) or len(digest) != SHA256_BYTES:
        raise InvalidRequest(
            f"{name}: {ALGORITHM} must be a byte sequence of {SHA256_BYTES} bytes "
            f"(`{ALGORITHM}=:<base64>:`)",
            details={"field": name},
        )
    return digest.hex()
