"""Container detection from magic bytes, and the judgement of a body's format."""

from __future__ import annotations

import pytest

from ingest.errors import UnsupportedFormat
from ingest.pipeline.container import HEAD_BYTES, detect_format, resolve_format
from tests.fakes import HEADS, MKV_HEAD, WEBM_HEAD, video_bytes

ALL = ("mp4", "mov", "avi", "mkv", "webm")


@pytest.mark.parametrize("fmt", ALL)
def test_each_container_is_detected_from_its_head(fmt: str) -> None:
    assert detect_format(video_bytes(HEAD_BYTES, fmt=fmt)) == fmt


def test_ftyp_brands_other_than_quicktime_are_mp4() -> None:
    for brand in (b"isom", b"mp42", b"avc1", b"M4V "):
        assert detect_format(b"\x00\x00\x00\x1cftyp" + brand + b"\x00" * 16) == "mp4"
    assert detect_format(b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00") == "mov"


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\x00\x00\x00",
        b"%PDF-1.7\n" + b"0" * 64,
        b"RIFF\x24\x00\x00\x00WAVEfmt ",  # RIFF, but audio
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
        b"ID3\x03\x00" + b"\x00" * 64,
        b"\x00\x00\x00\x18moov" + b"\x00" * 16,  # no ftyp at offset 4
        b"xxxxftyp",  # too short to have a brand
    ],
)
def test_anything_else_is_not_detected(head: bytes) -> None:
    assert detect_format(head) is None


def test_ebml_doctype_decides_webm_against_mkv() -> None:
    assert detect_format(WEBM_HEAD) == "webm"
    assert detect_format(MKV_HEAD) == "mkv"
    # An EBML header cut before its DocType is still Matroska.
    assert detect_format(WEBM_HEAD[:8]) == "mkv"


def test_unknown_body_is_refused() -> None:
    with pytest.raises(UnsupportedFormat) as refused:
        resolve_format(None, declared="mp4", allowed=ALL)
    assert refused.value.event_code == "UNSUPPORTED_FORMAT"


@pytest.mark.parametrize(
    ("declared", "detected"),
    [("mp4", "mov"), ("mov", "mp4"), ("mkv", "webm"), ("webm", "mkv"), (".MP4", "mov")],
)
def test_declared_format_in_the_same_family_gives_way_to_the_bytes(
    declared: str, detected: str
) -> None:
    assert resolve_format(detected, declared=declared, allowed=ALL) == detected


@pytest.mark.parametrize(("declared", "detected"), [("mp4", "avi"), ("avi", "mkv"), ("flv", "mp4")])
def test_declared_format_of_another_family_is_refused(declared: str, detected: str) -> None:
    with pytest.raises(UnsupportedFormat) as refused:
        resolve_format(detected, declared=declared, allowed=ALL)
    assert refused.value.details["detected"] == detected


def test_detected_format_must_be_allowed() -> None:
    assert resolve_format("webm", declared=None, allowed=("webm",)) == "webm"
    with pytest.raises(UnsupportedFormat, match="mov is not an allowed format"):
        resolve_format("mov", declared="mp4", allowed=("mp4",))


def test_sample_heads_fit_in_head_bytes() -> None:
    assert all(len(head) <= HEAD_BYTES for head in HEADS.values())
