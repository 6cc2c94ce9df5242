"""The request log of a real server on the real Kafka and MinIO: one line per upload outcome
with every field, one per failed request, and never a token, in text and in JSON."""

from __future__ import annotations

import base64
import json
import logging

import aiohttp
import pytest

from infra.logs import FIELDS, JsonFormatter, TextFormatter
from tests.integration.harness import RunningIngest
from tests.media import NOT_A_VIDEO, fake_video

SIZE = 256 * 1024


def _records(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger]


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return dict(getattr(record, FIELDS))


async def _create(http: aiohttp.ClientSession, ingest: RunningIngest, user: str) -> str:
    async with http.post(
        f"{ingest.url}/v1/uploads",
        json={"filename": "clip.mp4", "expected_file_size": SIZE},
        headers=ingest.auth(user),
    ) as created:
        assert created.status == 201, await created.text()
        return str((await created.json())["session_id"])


async def test_a_completed_upload_has_one_outcome_line_with_every_field(
    ingest: RunningIngest, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ingest")
    session = await _create(http, ingest, "logged-user")
    async with http.put(
        f"{ingest.url}/v1/uploads/{session}",
        data=fake_video(SIZE),
        headers={**ingest.auth("logged-user"), "Content-Type": "video/mp4"},
    ) as stored:
        assert stored.status == 201, await stored.text()
        request_id = stored.headers["X-Request-Id"]

    outcomes = [r for r in _records(caplog, "ingest.uploads") if _fields(r)["session"] == session]
    assert len(outcomes) == 1
    fields = _fields(outcomes[0])
    assert fields["request_id"] == request_id
    assert fields["user"] == "logged-user"
    assert fields["protocol"] == "stream"
    assert fields["bytes"] == SIZE
    assert fields["result"] == "completed"
    assert fields["error_code"] is None
    assert isinstance(fields["duration_s"], float)
    assert fields["duration_s"] > 0
    assert outcomes[0].levelno == logging.INFO

    access = [
        r for r in _records(caplog, "ingest.access") if _fields(r)["request_id"] == request_id
    ]
    assert len(access) == 1
    assert _fields(access[0])["status"] == 201


async def test_a_refused_upload_and_a_failed_request_are_one_warning_each(
    ingest: RunningIngest, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ingest")
    session = await _create(http, ingest, "refused-user")
    async with http.put(
        f"{ingest.url}/v1/uploads/{session}",
        data=(NOT_A_VIDEO + bytes(SIZE))[:SIZE],
        headers={**ingest.auth("refused-user"), "Content-Type": "video/mp4"},
    ) as refused:
        assert refused.status == 415

    (outcome,) = [r for r in _records(caplog, "ingest.uploads") if _fields(r)["session"] == session]
    assert outcome.levelno == logging.WARNING
    assert _fields(outcome)["result"] == "failed"
    assert _fields(outcome)["error_code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert _fields(outcome)["user"] == "refused-user"

    async with http.get(f"{ingest.url}/v1/uploads/nope", headers=ingest.auth("x")) as missing:
        assert missing.status == 404
        request_id = missing.headers["X-Request-Id"]
    (failed,) = [
        r for r in _records(caplog, "ingest.access") if _fields(r)["request_id"] == request_id
    ]
    assert failed.levelno == logging.WARNING
    assert _fields(failed)["error_code"] == "SESSION_NOT_FOUND"
    assert _fields(failed)["error_message"]


async def test_a_tus_upload_completes_with_one_outcome_line(
    ingest: RunningIngest, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ingest")
    name = base64.b64encode(b"clip.mp4").decode()
    tus = {**ingest.auth("tus-user"), "Tus-Resumable": "1.0.0"}
    async with http.post(
        f"{ingest.url}/v1/tus/",
        headers={**tus, "Upload-Length": str(SIZE), "Upload-Metadata": f"filename {name}"},
    ) as created:
        assert created.status == 201, await created.text()
        location = created.headers["Location"]
    body = fake_video(SIZE)
    for offset in (0, SIZE // 2):
        async with http.patch(
            f"{ingest.url}{location}",
            data=body[offset : offset + SIZE // 2],
            headers={
                **tus,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            },
        ) as patched:
            assert patched.status == 204, await patched.text()
    session = location.rstrip("/").rsplit("/", 1)[-1]
    outcomes = [r for r in _records(caplog, "ingest.uploads") if _fields(r)["session"] == session]
    assert len(outcomes) == 1  # the first PATCH stored half: not an outcome
    assert _fields(outcomes[0])["protocol"] == "tus"
    assert _fields(outcomes[0])["bytes"] == SIZE
    assert _fields(outcomes[0])["result"] == "completed"


async def test_a_resumable_http_upload_in_one_request_has_its_outcome_line(
    ingest: RunningIngest, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ingest")
    async with http.post(
        f"{ingest.url}/v1/resumable",
        data=fake_video(SIZE),
        headers={
            **ingest.auth("ietf-user"),
            "Upload-Complete": "?1",
            "Upload-Draft-Interop-Version": "8",
            "Content-Type": "video/mp4",
            "Content-Disposition": 'inline; filename="drafted.mp4"',
        },
    ) as stored:
        assert stored.status == 201, await stored.text()
        request_id = stored.headers["X-Request-Id"]
    (outcome,) = [
        r for r in _records(caplog, "ingest.uploads") if _fields(r)["request_id"] == request_id
    ]
    assert _fields(outcome)["protocol"] == "resumable"
    assert _fields(outcome)["user"] == "ietf-user"
    assert _fields(outcome)["bytes"] == SIZE
    assert _fields(outcome)["result"] == "completed"


async def test_no_log_line_shows_a_token_even_one_sent_in_the_url(
    ingest: RunningIngest, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = ingest.token("secretive")
    async with http.get(f"{ingest.url}/v1/quota", params={"token": token, "x": "1"}) as url_token:
        assert url_token.status == 401
    async with http.get(
        f"{ingest.url}/v1/quota", headers={"Authorization": f"Bearer {token}"}
    ) as header_token:
        assert header_token.status == 200
    async with http.get(
        f"{ingest.url}/v1/quota", headers={"Authorization": f"Bearer {token}x"}
    ) as bad_token:
        assert bad_token.status == 401

    paths = [_fields(r)["path"] for r in _records(caplog, "ingest.access")]
    assert "/v1/quota?token=***&x=1" in paths
    assert caplog.records
    for record in caplog.records:
        for formatter in (TextFormatter(), JsonFormatter()):
            line = formatter.format(record)
            assert token not in line
            assert token.split(".")[2] not in line  # not even the signature alone
    as_json = [json.loads(JsonFormatter().format(r)) for r in _records(caplog, "ingest.access")]
    assert {"time", "level", "logger", "message", "request_id", "status"} <= set(as_json[0])
