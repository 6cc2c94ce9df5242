"""The schemathesis loop: every operation of `/openapi.json`, generated cases, checked answers.

Each operation is fuzzed twice, with data that fits its schemas (positive) and
with data that breaks them (negative), for an equal share of the time left
and at most `examples` cases each. Every answer goes through schemathesis'
checks (no 5xx; status code, content type, headers and body as documented;
schema-breaking input refused) and through `no_foreign_data`: no answer to the
fuzzing user may hold anything of the other user it did not send itself.
Session ids in paths and bodies are sometimes replaced by real ones (the
fuzzing user's own and the other user's), so the checks see more than 404s.
Nothing here raises on a finding: findings are counted, deduplicated and
returned with a curl command that reproduces one of each.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

REQUEST_TIMEOUT = 30.0
REJECTIONS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "417", "422"]
REJECTIONS += ["428", "429"]
"""Statuses that refuse input that breaks the document: schemathesis' list, plus 413 (a
declared length over the limit) and 417 (an `Expect` other than 100-continue)."""

# tus chunks and the IETF draft's appends are raw bytes; schemathesis knows the plain
# octet-stream type only.
for _media_type in ("application/offset+octet-stream", "application/partial-upload"):
    schemathesis.serializer.alias(_media_type, "application/octet-stream")
BUILTIN_CHECKS: tuple[CheckFunction, ...] = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
)


@dataclass(frozen=True)
class Finding:
    operation: str
    check: str
    status: int
    message: str
    curl: str


@dataclass
class Tally:
    """What one run sent and found."""

    requests: int = 0
    unsendable: int = 0
    """Cases the HTTP client refused to send (e.g. a header value it cannot encode)."""
    statuses: Counter[int] = field(default_factory=Counter)
    findings: dict[tuple[str, str, str], Finding] = field(default_factory=dict)
    occurrences: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    operations: int = 0
    skipped: list[str] = field(default_factory=list)
    seed: int = 0
    """Repeats the run's cases (`python -m benchmarks fuzz --seed`), given the same server state."""

    def record(self, operation: str, title: str, status: int, message: str, curl: str) -> None:
        key = (operation, title, str(status))
        self.occurrences[key] += 1
        if key not in self.findings:
            self.findings[key] = Finding(operation, title, status, message[:600], curl)


@dataclass(frozen=True)
class Actor:
    """Who the fuzzer is, and which session ids it may aim at."""

    token: str
    admin_token: str
    session_ids: Sequence[str]


def no_foreign_data(secrets: Sequence[str]) -> CheckFunction:
    """A check failing an answer that holds a value of another user the request did not carry.

    An id the caller put in its own request may come back (`upload session X not
    found`); a filename, key, hash, video id or user id of the other user never may.
    """
    wanted = [s for s in secrets if s]

    def no_foreign_data(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
        request = response.request
        sent = f"{request.url} {request.headers} {_text(request.body)}"
        answer = f"{response.headers} {response.text}"
        leaked = [s for s in wanted if s in answer and s not in sent]
        if leaked:
            raise Failure(
                operation=case.operation.label,
                title="Another user's data in the answer",
                message=f"the answer holds {leaked[:3]}",
            )
        return None

    return no_foreign_data


def _text(body: Any) -> str:
    if isinstance(body, bytes):
        return body.decode(errors="replace")
    return str(body or "")


def fuzz_api(
    url: str,
    actor: Actor,
    foreign: CheckFunction,
    *,
    seconds: float,
    examples: int,
    seed: int | None = None,
) -> Tally:
    """Fuzz every operation of the live API at `url` for about `seconds`."""
    as_user = _operations(url, actor.token, admin=False)
    as_admin = _operations(url, actor.admin_token, admin=True)
    operations = as_user + as_admin
    tally = Tally(operations=len(operations), seed=random.getrandbits(32) if seed is None else seed)
    slots = [(op, mode) for op in operations for mode in GenerationMode]
    deadline = time.monotonic() + seconds
    with requests.Session() as http:
        for index, (operation, mode) in enumerate(slots):
            share = (deadline - time.monotonic()) / (len(slots) - index)
            if share <= 0:
                break
            run = _one_operation(operation, mode, http, url, actor, foreign, tally, share)
            try:
                _settled(run, examples, tally.seed + index)()
            except _TimeUp:
                pass
            except Unsatisfiable:
                # Nothing to generate: e.g. no schema-breaking input for a route without inputs.
                tally.skipped.append(f"{operation.label} ({mode.value})")
    return tally


ADMIN_PREFIX = "/v1/admin/"


def _operations(url: str, token: str, *, admin: bool) -> list[Any]:
    """The operations of the document, sending `token`: the admin routes, or all the others."""
    config = schemathesis.Config.from_dict(
        {
            "auth": {"openapi": {"bearer": {"bearer": token}}},
            # Unknown query parameters are ignored, on purpose: a client may send newer ones.
            # The token is always the actor's: a broken one would stop every case at 401
            # (tokens have their own hand-written suite).
            "generation": {"allow-extra-parameters": False, "with-security-parameters": False},
            "checks": {"negative_data_rejection": {"expected-statuses": REJECTIONS}},
            "operations": [
                {
                    # tus answers a missing or other protocol version with 412, as tus requires.
                    "include-path-regex": "^/v1/tus",
                    "checks": {
                        "negative_data_rejection": {"expected-statuses": [*REJECTIONS, "412"]}
                    },
                },
            ],
        }
    )
    schema = schemathesis.openapi.from_url(
        f"{url}/openapi.json", config=config, timeout=REQUEST_TIMEOUT
    )
    found = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise RuntimeError(f"an operation of the document is not valid: {result.err()}")
        found.append(result.ok())
    return [op for op in found if op.path.startswith(ADMIN_PREFIX) == admin]


def _one_operation(
    operation: Any,
    mode: GenerationMode,
    http: requests.Session,
    url: str,
    actor: Actor,
    foreign: CheckFunction,
    tally: Tally,
    share: float,
) -> Callable[..., None]:
    stop = time.monotonic() + share
    targets = st.sampled_from([None, *actor.session_ids])
    checks = [*BUILTIN_CHECKS, foreign]
    if operation.path.endswith("/validate") or operation.method.upper() == "OPTIONS":
        # Answering any id is these routes' job: validation says `is_valid: false` for
        # what is no usable session, and tus discovery (OPTIONS) names no upload at all.
        checks.remove(negative_data_rejection)

    @given(case=operation.as_strategy(generation_mode=mode), target=targets)
    def one(case: Case[Any], target: str | None) -> None:
        if time.monotonic() > stop:
            raise _TimeUp
        if mode is GenerationMode.POSITIVE:
            # Only data that fits the schema is aimed: a broken id must stay broken.
            _aim(case, target)
        try:
            response = case.call(base_url=url, session=http, timeout=REQUEST_TIMEOUT)
        except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL, ValueError):
            tally.unsendable += 1
            return
        except requests.RequestException as error:
            # No answer at all (connection dropped, timed out): a finding like any other.
            curl = case.as_curl_command(base_url=url)
            tally.record(operation.label, "No answer", 0, repr(error), curl)
            return
        tally.requests += 1
        tally.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=checks)
        except FailureGroup as group:
            curl = case.as_curl_command(headers=dict(response.request.headers), base_url=url)
            for failure in group.exceptions:
                message = failure.message or ""
                tally.record(operation.label, failure.title, response.status_code, message, curl)

    return one


class _TimeUp(BaseException):
    """Ends an operation's share of time. Not an Exception: Hypothesis lets it through
    instead of taking it for a failure to shrink, and generates no more cases."""


def _aim(case: Case[Any], target: str | None) -> None:
    """Point the case at a real session instead of the generated id."""
    if target is None:
        return
    if case.path_parameters and "session_id" in case.path_parameters:
        case.path_parameters["session_id"] = target
    elif isinstance(case.body, dict) and "session_id" in case.body:
        case.body["session_id"] = target


def _settled(test: Callable[..., None], examples: int, seed: int) -> Callable[..., None]:
    configured = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )(test)
    # Seeded: a run is repeated by its seed (and Hypothesis prints no seed of its own).
    return hypothesis_seed(seed)(configured)
