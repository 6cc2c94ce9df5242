"""The fuzzer's own check, `no_foreign_data`: it must fail on a leak, or the fuzz test
proves nothing."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import requests
from schemathesis import Response
from schemathesis.core.failures import Failure

from benchmarks.fuzz_cases import no_foreign_data

SECRETS = ["owner-secret-1.mp4", "0123456789abcdef0123456789abcdef"]


def _answer(body: str, *, url: str = "http://127.0.0.1/v1/uploads", sent: str = "") -> Response:
    request = requests.Request("POST", url, data=sent.encode()).prepare()
    return Response(200, {"content-type": ["application/json"]}, body.encode(), request, 0.01, True)


def _check(response: Response) -> None:
    case: Any = SimpleNamespace(operation=SimpleNamespace(label="POST /v1/uploads"))
    no_foreign_data(SECRETS)(None, response, case)  # type: ignore[arg-type]


def test_an_answer_holding_another_users_filename_fails() -> None:
    with pytest.raises(Failure, match=r"owner-secret-1\.mp4"):
        _check(_answer('{"sessions": [{"filename": "owner-secret-1.mp4"}]}'))


def test_an_answer_echoing_an_id_the_caller_sent_passes() -> None:
    sid = SECRETS[1]
    _check(_answer(f'{{"error_message": "session {sid} not found"}}', url=f"http://h/v1/{sid}"))
    sent = f'{{"session_id": "{sid}"}}'
    _check(_answer(f'{{"session_id": "{sid}", "is_owner": false}}', sent=sent))


def test_an_answer_without_foreign_data_passes() -> None:
    _check(_answer('{"sessions": [], "total": 0}'))
