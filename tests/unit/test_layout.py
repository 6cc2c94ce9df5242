"""The bucket layout keeps every user's keys apart, however their ids are spelled."""

from __future__ import annotations

import itertools
from urllib.parse import unquote

import pytest

from infra import layout

LOOKALIKES = [
    "a/b", "a_b", "a%2Fb", "a%252Fb", "auth0|1", "auth0_1", " alice", "alice", "alice ",
    ".", "..", "%2E%2E", "~", "%7E", "Ä", "A\u0308", "\x00", "", "x" * 256, "x" * 255 + "y",
    "é" * 256, "é" * 255 + "e",
]  # fmt: skip


def test_distinct_user_ids_never_share_a_segment() -> None:
    segments = [layout.user_segment(user) for user in LOOKALIKES]
    assert len(set(segments)) == len(LOOKALIKES)


@pytest.mark.parametrize("user", LOOKALIKES)
def test_a_segment_is_one_safe_path_segment(user: str) -> None:
    segment = layout.user_segment(user)
    assert "/" not in segment
    assert segment not in {".", ".."}
    assert segment.isascii()
    assert segment.isprintable()
    assert len(segment) <= layout.MAX_READABLE_SEGMENT + 1


def test_plain_ids_stay_readable_and_long_ones_are_hashed() -> None:
    assert layout.user_segment("team-a_01") == "team-a_01"
    assert layout.user_segment("auth0|42") == "auth0%7C42"
    assert layout.user_segment("x" * 256).startswith("~")


def test_every_key_derived_from_a_user_is_distinct_per_user() -> None:
    for a, b in itertools.combinations(["a/b", "a_b", "auth0|1", "auth0_1", " alice", "alice"], 2):
        assert layout.user_sessions_prefix(a) != layout.user_sessions_prefix(b)
        assert layout.stored_file_document(a, "ab" * 32) != layout.stored_file_document(
            b, "ab" * 32
        )
        assert layout.object_key(a, "u1", "f.mp4") != layout.object_key(b, "u1", "f.mp4")
        assert not layout.user_sessions_prefix(a).startswith(layout.user_sessions_prefix(b))


def test_object_keys_fit_in_s3_for_the_longest_ids() -> None:
    for user in ["é" * 256, "\U0001f600" * 256, "/" * 256]:
        key = layout.object_key(user, "f" * 32, "n" * 500 + ".mp4")
        assert len(key.encode()) < 1024


def test_filenames_are_reduced_to_one_safe_segment() -> None:
    assert layout.safe_filename("../../etc/passwd") == "passwd"
    assert layout.safe_filename("C:\\videos\\clip one.mp4") == "clip_one.mp4"
    assert layout.safe_filename("..") == "upload"
    assert layout.safe_filename(None) == "upload"


@pytest.mark.parametrize("user", LOOKALIKES)
def test_object_metadata_is_ascii_and_gives_the_user_back(user: str) -> None:
    metadata = layout.object_metadata(upload_id="u1", user_id=user, file_format=None)
    assert all(value.isascii() for value in metadata.values())
    assert unquote(metadata["user-id"]) == user
