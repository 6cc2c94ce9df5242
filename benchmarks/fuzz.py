"""`python -m benchmarks fuzz`: schemathesis against a live `ingest serve`, two users apart.

`run_fuzz` starts `ingest serve` as its own process on the given stack, plants
an owner's data (sessions with telling filenames, metadata and context, and
one stored upload), gives the fuzzing user a few sessions of its own, then
fuzzes every operation of `/openapi.json` as that user (`benchmarks.fuzz_cases`).
Afterwards it checks that the owner's data is as it was: still listed, still
active, the stored upload still completed. A failure to start the server or to
plant the data raises RuntimeError; what the fuzzer finds is returned, never
raised, so the caller decides (the test suite fails on any finding).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from benchmarks.environment import secret_of, server_env
from benchmarks.fuzz_cases import Actor, Finding, Tally, fuzz_api, no_foreign_data
from benchmarks.process import ingest_server
from benchmarks.workload import KiB, part_bytes
from ingest.auth import issue_token
from ingest.settings import IngestSettings

OWNER_SESSIONS = 3
OWN_SESSIONS = 6
UPLOAD_SIZE = 64 * KiB


@dataclass(frozen=True)
class Planted:
    """The owner's data: what the fuzzing user must never see, and how it must stay."""

    user_id: str
    secrets: list[str]
    active: list[str]
    completed: str


@dataclass(frozen=True)
class FuzzResult:
    tally: Tally
    seconds: float
    owner_findings: list[str]

    @property
    def findings(self) -> list[Finding]:
        return list(self.tally.findings.values())

    @property
    def clean(self) -> bool:
        return not self.tally.findings and not self.owner_findings


async def run_fuzz(
    settings: IngestSettings, *, seconds: float, examples: int, seed: int | None = None
) -> FuzzResult:
    secret = secret_of(settings)
    run = secrets.token_hex(4)
    owner, fuzzer = f"fuzz-owner-{run}", f"fuzz-user-{run}"
    env = server_env(settings, max_file_size=64 * 1024 * 1024)
    async with ingest_server(env) as server, aiohttp.ClientSession() as http:
        planted = await _plant(http, server.url, _auth(secret, owner), run)
        own = [
            await _create(http, server.url, _auth(secret, fuzzer), {}) for _ in range(OWN_SESSIONS)
        ]
        actor = Actor(
            token=_token(secret, fuzzer),
            admin_token=_token(secret, f"fuzz-admin-{run}", admin=True),
            session_ids=[*planted.active, planted.completed, *[s["session_id"] for s in own]],
        )
        started = time.monotonic()
        tally = await asyncio.to_thread(
            fuzz_api,
            server.url,
            actor,
            no_foreign_data(planted.secrets),
            seconds=seconds,
            examples=examples,
            seed=seed,
        )
        elapsed = time.monotonic() - started
        owner_findings = await _owner_untouched(http, server.url, _auth(secret, owner), planted)
    return FuzzResult(tally, elapsed, owner_findings)


def _token(secret: str, user: str, *, admin: bool = False) -> str:
    return issue_token(secret, user, admin=admin, ttl_seconds=7200)


def _auth(secret: str, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(secret, user)}"}


async def _create(
    http: aiohttp.ClientSession, url: str, auth: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    async with http.post(f"{url}/v1/uploads", json=body, headers=auth) as response:
        if response.status != 201:
            raise RuntimeError(f"creating a session: {response.status} {await response.text()}")
        created: dict[str, Any] = await response.json()
        return created


async def _plant(http: aiohttp.ClientSession, url: str, auth: dict[str, str], run: str) -> Planted:
    found: list[str] = []
    active: list[str] = []
    for index in range(OWNER_SESSIONS):
        marker = f"owner-marker-{run}-{index}"
        created = await _create(
            http,
            url,
            auth,
            {
                "filename": f"owner-secret-{run}-{index}.mp4",
                "metadata": {"note": marker},
                "dashboard_context": {"page": f"{marker}-context"},
            },
        )
        active.append(created["session_id"])
        found += [f"owner-secret-{run}-{index}", marker, created["session_id"]]
    stored = await _create(http, url, auth, {"filename": f"owner-stored-{run}.mp4"})
    body = part_bytes(0, UPLOAD_SIZE)
    async with http.put(
        f"{url}/v1/uploads/{stored['session_id']}",
        data=body,
        headers={**auth, "Content-Type": "video/mp4"},
    ) as response:
        if response.status != 201:
            raise RuntimeError(f"storing the owner's upload: {await response.text()}")
        result = await response.json()
    found += [
        f"owner-stored-{run}",
        stored["session_id"],
        result["video_id"],
        result["analysis_id"],
        result["s3_key"],
        hashlib.sha256(body).hexdigest(),
        f"fuzz-owner-{run}",
    ]
    return Planted(f"fuzz-owner-{run}", found, active, stored["session_id"])


async def _owner_untouched(
    http: aiohttp.ClientSession, url: str, auth: dict[str, str], planted: Planted
) -> list[str]:
    """What the fuzzing user changed of the owner's data (nothing, when isolation holds)."""
    problems: list[str] = []
    expected = {**{sid: "active" for sid in planted.active}, planted.completed: "completed"}
    for session_id, status in expected.items():
        async with http.get(f"{url}/v1/uploads/{session_id}", headers=auth) as response:
            body = await response.json()
            if response.status != 200 or body.get("status") != status:
                problems.append(f"owner's session {session_id}: {response.status} {body}")
    return problems
