"""Exceptions become words, where they are turned into messages a person reads."""

from __future__ import annotations

import asyncio
import re

import jwt
import pytest
from aiohttp import http_exceptions

from infra.describe import in_words
from ingest.adapters.local_failures import disk_error
from ingest.auth import TokenVerifier
from ingest.errors import ClientDisconnected, Unauthenticated
from ingest.pipeline.body import MeteredBody, SizeLimits
from tests.fakes import ScriptedBody

# What a Python repr or a `Type: text` message looks like: a CamelCase type, then ( or :.
_CODE_SHAPED = re.compile(r"\b[A-Z][a-z]+(?:[A-Z][a-z]*)+(?:\(|:)")


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (ConnectionResetError("Connection lost"), "the connection was lost"),
        (ConnectionResetError(104, "Connection reset by peer"), "reset by the other side"),
        (ConnectionRefusedError(111, "Connect call failed"), "the connection was refused"),
        (BrokenPipeError(), "the other side closed the connection"),
        (TimeoutError(), "timed out"),
        (asyncio.IncompleteReadError(b"abc", 10), "closed after 3 of 10 bytes"),
        (OSError(28, "No space left on device"), "no space left on device"),
        (PermissionError(13, "Permission denied", "/data/x"), "permission denied"),
        (KeyError("abc"), "key error: 'abc'"),
        (RuntimeError(), "runtime error"),
        (
            http_exceptions.ContentLengthError("Not enough data to satisfy content length header."),
            "not enough data to satisfy content length header",
        ),
        (jwt.DecodeError("Not enough segments"), "not enough segments"),
    ],
)
def test_an_exception_is_said_in_words(error: BaseException, words: str) -> None:
    said = in_words(error)
    assert words in said
    assert not _CODE_SHAPED.search(said), said
    assert repr(error) not in said


def test_a_library_text_that_repeats_the_type_name_loses_it() -> None:
    class KafkaConnectionError(Exception):
        def __str__(self) -> str:
            return "KafkaConnectionError: Unable to bootstrap from [('127.0.0.1', 1)]"

    assert in_words(KafkaConnectionError()) == "unable to bootstrap from [('127.0.0.1', 1)]"

    class KafkaTimeoutError(Exception):
        def __str__(self) -> str:
            return "KafkaTimeoutError"

    assert in_words(KafkaTimeoutError()) == "kafka timeout error"


async def test_a_client_gone_mid_body_is_recorded_without_a_repr() -> None:
    lost = ConnectionResetError("Connection lost")
    body = MeteredBody(ScriptedBody(b"x" * 100, then=lost).chunks(), SizeLimits(max_size=1_000))
    with pytest.raises(ClientDisconnected) as gone:
        async for _ in body:
            pass
    assert gone.value.message == "the client connection failed: the connection was lost"


def test_a_disk_failure_names_what_happened() -> None:
    error = disk_error("put_object", "bucket", "a/key", OSError(28, "No space left on device"))
    assert error.message == "local put_object of 'a/key' failed: no space left on device"
    assert error.details["code"] == "ENOSPC"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not-a-token", "the token is not a JWT"),
        ("a.b.c", "the token is not a JWT"),
        (jwt.encode({"sub": "u"}, "s" * 40, algorithm="HS256"), "has no 'exp' claim"),
        (
            jwt.encode({"sub": "u", "exp": 4_000_000_000}, "t" * 40, algorithm="HS256"),
            "signature does not match",
        ),
    ],
)
def test_a_refused_token_is_explained_without_the_parser_s_words(token: str, reason: str) -> None:
    with pytest.raises(Unauthenticated) as refused:
        TokenVerifier(secret="s" * 40).verify(token)
    assert reason in refused.value.message
    assert "segments" not in refused.value.message
