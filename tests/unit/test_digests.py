"""`Repr-Digest` / `Content-Digest` parsing: the SHA-256 a request declares, or a clear 400."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from ingest.errors import InvalidRequest
from ingest.http.digests import declared_sha256

BODY = b"hello world"
HEX = hashlib.sha256(BODY).hexdigest()
B64 = base64.b64encode(hashlib.sha256(BODY).digest()).decode()


def _headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


@pytest.mark.parametrize("field", ["Repr-Digest", "Content-Digest", "repr-digest"])
def test_a_sha256_member_is_the_declared_digest(field: str) -> None:
    assert declared_sha256(_headers((field, f"sha-256=:{B64}:"))) == {HEX}


def test_other_algorithms_and_parameters_are_ignored() -> None:
    value = f"sha-512=:AAAA:, unixsum=42, sha-256=:{B64}:;note=1"
    assert declared_sha256(_headers(("Repr-Digest", value))) == {HEX}
    assert declared_sha256(_headers(("Repr-Digest", "sha-512=:AAAA:, md5=:AAAA:"))) == frozenset()


def test_no_field_declares_nothing() -> None:
    assert declared_sha256(_headers()) == frozenset()


def test_both_fields_and_repeated_lines_are_all_collected() -> None:
    other = base64.b64encode(bytes(32)).decode()
    headers = _headers(
        ("Content-Digest", "sha-512=:AAAA:"),
        ("Content-Digest", f"sha-256=:{B64}:"),
        ("Repr-Digest", f"sha-256=:{other}:"),
    )
    assert declared_sha256(headers) == {HEX, bytes(32).hex()}


def test_a_content_coded_body_has_its_digests_ignored() -> None:
    # They cover the coded bytes, which are not what is stored.
    headers = _headers(("Content-Encoding", "gzip"), ("Repr-Digest", "sha-256=:AAAA:"))
    assert declared_sha256(headers) == frozenset()


@pytest.mark.parametrize(
    "value",
    [
        f"sha-256={B64}",
        "sha-256=:AAAA:",
        "sha-256=:a b:",
        f"SHA-256=:{B64}:",
        f"sha-256=:{B64}: junk",
        "sha-256",
        "sha-256=(:AAAA:)",
        "é=:AAAA:",
    ],
)
def test_a_malformed_field_is_refused_naming_it(value: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        declared_sha256(_headers(("Content-Digest", value)))
    assert refused.value.details == {"field": "Content-Digest"}


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_any_field_value_is_a_digest_or_a_400_never_another_error(value: str) -> None:
    try:
        found = declared_sha256(_headers(("Repr-Digest", value)))
    except InvalidRequest:
        return
    assert all(len(digest) == 64 for digest in found)
