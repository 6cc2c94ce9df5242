"""The per-instance store of tus uploads' running SHA-256: one prefix per upload, bounded."""

from __future__ import annotations

import hashlib

from ingest.usecases.tus.running import RunningHashes


def test_a_kept_hash_is_found_only_at_its_offset() -> None:
    hashes = RunningHashes()
    digest = hashlib.sha256(b"abc")
    hashes.keep("u1", 3, digest)

    found = hashes.at("u1", 3)
    assert found is not None
    assert found.hexdigest() == hashlib.sha256(b"abc").hexdigest()
    assert hashes.at("u1", 4) is None
    assert hashes.at("u2", 3) is None
    assert hashes.sha256_of("u1", 3) == hashlib.sha256(b"abc").hexdigest()
    assert hashes.sha256_of("u1", 10) is None


def test_offset_zero_is_the_hash_of_nothing() -> None:
    empty = RunningHashes().at("new", 0)
    assert empty is not None
    assert empty.hexdigest() == hashlib.sha256().hexdigest()


def test_a_longer_prefix_replaces_the_shorter_and_forget_drops_it() -> None:
    hashes = RunningHashes()
    hashes.keep("u", 1, hashlib.sha256(b"a"))
    hashes.keep("u", 2, hashlib.sha256(b"ab"))
    assert hashes.at("u", 1) is None
    assert len(hashes) == 1
    hashes.forget("u")
    assert hashes.at("u", 2) is None


def test_the_least_recently_used_upload_goes_first_when_full() -> None:
    hashes = RunningHashes(max_uploads=2)
    hashes.keep("a", 1, hashlib.sha256(b"a"))
    hashes.keep("b", 1, hashlib.sha256(b"b"))
    assert hashes.at("a", 1) is not None  # "a" used: "b" is now the oldest
    hashes.keep("c", 1, hashlib.sha256(b"c"))
    assert len(hashes) == 2
    assert hashes.at("b", 1) is None
    assert hashes.at("a", 1) is not None
