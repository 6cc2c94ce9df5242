"""Bearer tokens: pinned algorithms, required claims, roles."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ingest.auth import TokenVerifier, issue_token
from ingest.errors import Unauthenticated

SECRET = "unit-test-secret-" + "x" * 64


def test_a_valid_token_names_the_user_and_roles() -> None:
    verifier = TokenVerifier(secret=SECRET)
    principal = verifier.from_authorization(f"Bearer {issue_token(SECRET, 'ann', admin=True)}")
    assert principal.user_id == "ann"
    assert principal.is_admin
    assert not verifier.verify(issue_token(SECRET, "bob")).is_admin


@pytest.mark.parametrize(
    "header",
    [None, "", "Basic abc", "Bearer ", "Bearer not.a.jwt"],
)
def test_missing_or_malformed_headers_are_refused(header: str | None) -> None:
    with pytest.raises(Unauthenticated):
        TokenVerifier(secret=SECRET).from_authorization(header)


def test_expiry_is_enforced_and_required() -> None:
    verifier = TokenVerifier(secret=SECRET)
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(issue_token(SECRET, "ann", ttl_seconds=-60))
    no_exp = jwt.encode({"sub": "ann"}, SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated, match="exp"):
        verifier.verify(no_exp)


def test_the_algorithm_is_pinned() -> None:
    unsigned = jwt.encode({"sub": "ann", "exp": int(time.time()) + 60}, None, algorithm="none")
    with pytest.raises(Unauthenticated):
        TokenVerifier(secret=SECRET).verify(unsigned)
    hs512 = jwt.encode({"sub": "ann", "exp": int(time.time()) + 60}, SECRET, algorithm="HS512")
    with pytest.raises(Unauthenticated):
        TokenVerifier(secret=SECRET).verify(hs512)


def test_rs256_tokens_verify_with_the_public_key_only() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    token = jwt.encode({"sub": "ann", "exp": int(time.time()) + 60}, key, algorithm="RS256")
    assert TokenVerifier(public_key=public).verify(token).user_id == "ann"
    # An HS256 token signed with the public key text must not pass (algorithm confusion).
    confused = jwt.encode({"sub": "ann", "exp": int(time.time()) + 60}, "x" * 64, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        TokenVerifier(public_key=public).verify(confused)


@pytest.mark.parametrize("subject", ["", "x" * 257, 42, ["ann"], None])
def test_a_subject_that_cannot_name_a_user_is_refused(subject: object) -> None:
    claims = {"sub": subject, "exp": int(time.time()) + 60}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        TokenVerifier(secret=SECRET).verify(token)


@pytest.mark.parametrize("subject", ["x" * 256, "..", "a\x00b", "auth0|1", " alice"])
def test_any_string_up_to_256_characters_is_a_user(subject: str) -> None:
    token = jwt.encode({"sub": subject, "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    assert TokenVerifier(secret=SECRET).verify(token).user_id == subject
