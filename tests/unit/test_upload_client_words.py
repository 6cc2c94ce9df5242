"""What `ingest upload` says when a token, the connection or the server's answer is wrong."""

from __future__ import annotations

import aiohttp
import pytest

from cli.client.errors import UploadFailed, connection_failure, from_response
from cli.upload import looks_like_jwt, with_result_url
from ingest.auth import issue_token


@pytest.mark.parametrize(
    ("token", "shaped"),
    [
        (issue_token("s" * 40, "someone", ttl_seconds=60), True),
        ("paste-here", False),
        ("Bearer " + issue_token("s" * 40, "someone", ttl_seconds=60), False),
        ("a.b", False),
        ("a.b.c.d", False),
        ("a.b!.c", False),
    ],
)
def test_a_token_must_look_like_a_jwt_before_anything_is_sent(token: str, shaped: bool) -> None:
    assert looks_like_jwt(token) is shaped


def test_a_refused_token_says_how_to_get_a_good_one() -> None:
    failure = from_response(401, {"error_code": "UNAUTHORIZED", "error_message": "expired"})
    assert str(failure) == (
        "401 UNAUTHORIZED: expired; run `ingest token --user NAME` or copy the token "
        "`ingest dev` printed"
    )
    assert not failure.retriable
    assert not failure.final_for_the_upload  # a good token resumes the same upload


@pytest.mark.parametrize("status", [400, 403, 404, 410, 413, 415])
def test_a_final_refusal_ends_the_upload_for_good(status: int) -> None:
    assert from_response(status, {"error_code": "X"}).final_for_the_upload


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504])
def test_a_passing_failure_keeps_the_upload_to_resume(status: int) -> None:
    failure = from_response(status, None)
    assert failure.retriable
    assert not failure.final_for_the_upload
    assert not UploadFailed("connection", retriable=True).final_for_the_upload


def test_connection_failures_are_words() -> None:
    refused = aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 1, False, True, None, None, None),
        ConnectionRefusedError(111, "Connect call failed"),
    )
    said = connection_failure("http://127.0.0.1:1", refused)
    assert said == (
        "cannot reach http://127.0.0.1:1: the connection was refused (nothing listens there)"
    )
    assert connection_failure("x", aiohttp.ServerDisconnectedError()) == (
        "the server closed the connection"
    )
    assert connection_failure("x", TimeoutError()) == "the server did not answer in time"
    assert "Error(" not in connection_failure("x", aiohttp.ClientPayloadError("cut short"))


def test_the_result_url_is_absolute() -> None:
    result = {"file": "a.mp4", "redirect_url": "/dashboard/videos/v1/results"}
    assert with_result_url(result, "http://127.0.0.1:8080/")["result_url"] == (
        "http://127.0.0.1:8080/dashboard/videos/v1/results"
    )
    assert "result_url" not in with_result_url({"file": "a.mp4", "error": "x"}, "http://h")
