"""Bearer tokens: pinned algorithms, required claims, roles, and the keys refused at start."""

from __future__ import annotations

import logging
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ingest.auth import KeyConfigurationError, TokenVerifier, issue_token
from ingest.errors import Unauthenticated

SECRET = "unit-test-secret-" + "x" * 64


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


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


@pytest.mark.parametrize("token", ["\udcff\udcfe.x.y", "é.x.y", "a.b.\x00"])
def test_a_token_with_characters_no_jwt_holds_is_refused(token: str) -> None:
    with pytest.raises(Unauthenticated):
        TokenVerifier(secret=SECRET).from_authorization(f"Bearer {token}")


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", ["4102444800", True, [4102444800], {"at": 1}])
def test_a_time_claim_that_is_not_a_number_is_refused(claim: str, value: object) -> None:
    now = int(time.time())
    claims = {"sub": "ann", "iat": now, "exp": now + 600, claim: value}
    with pytest.raises(Unauthenticated):
        TokenVerifier(secret=SECRET).verify(jwt.encode(claims, SECRET, algorithm="HS256"))


def test_the_algorithm_is_pinned() -> None:
    unsigned = jwt.encode({"sub": "ann", "exp": int(time.time()) + 60}, "", algorithm="none")
    with pytest.raises(Unauthenticated):
        TokenVerifier(secret=SECRET).verify(unsigned)
    hs512 = jwt.encode({"sub": "ann", "exp": int(time.time()) + 60}, SECRET, algorithm="HS512")
    with pytest.raises(Unauthenticated):
        TokenVerifier(secret=SECRET).verify(hs512)


def test_rs256_tokens_verify_with_the_public_key_only(rsa_key: rsa.RSAPrivateKey) -> None:
    public = public_pem(rsa_key)
    token = jwt.encode({"sub": "ann", "exp": int(time.time()) + 60}, rsa_key, algorithm="RS256")
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


# --- roles ---------------------------------------------------------------------------


def token_with_roles(roles: object) -> str:
    return jwt.encode(
        {"sub": "ann", "exp": int(time.time()) + 60, "roles": roles}, SECRET, algorithm="HS256"
    )


@pytest.mark.parametrize("roles", [["admin"], ["viewer", "admin"]])
def test_a_list_of_strings_holding_admin_grants_admin(roles: list[str]) -> None:
    principal = TokenVerifier(secret=SECRET).verify(token_with_roles(roles))
    assert principal.is_admin
    assert principal.roles == frozenset(roles)


@pytest.mark.parametrize(
    "roles",
    [
        "admin",
        "admin viewer",
        {"admin": True},
        {"roles": ["admin"]},
        ["admin", 1],
        [["admin"]],
        True,
        7,
    ],
)
def test_roles_of_any_other_shape_grant_nothing_and_the_token_still_counts(
    roles: object, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="infra.tokens"):
        principal = TokenVerifier(secret=SECRET).verify(token_with_roles(roles))

    assert principal.user_id == "ann"
    assert principal.roles == frozenset()
    assert not principal.is_admin
    [warning] = [r for r in caplog.records if r.name == "infra.tokens"]
    assert "not a list of strings" in warning.getMessage()


@pytest.mark.parametrize("roles", [None, []])
def test_no_roles_grant_nothing_quietly(roles: object, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="infra.tokens"):
        principal = TokenVerifier(secret=SECRET).verify(token_with_roles(roles))
    assert principal.roles == frozenset()
    assert not [r for r in caplog.records if r.name == "infra.tokens"]


# --- keys refused when the verifier is built ------------------------------------------


@pytest.mark.parametrize("secret", ["short", "x" * 31, "é" * 15 + "x"])
def test_an_hs256_secret_under_32_bytes_is_refused(secret: str) -> None:
    with pytest.raises(KeyConfigurationError, match=r"HS256 secret is \d+ bytes; at least 32"):
        TokenVerifier(secret=secret)


@pytest.mark.parametrize("secret", ["x" * 32, "é" * 16])
def test_an_hs256_secret_of_32_bytes_is_enough(secret: str) -> None:
    verifier = TokenVerifier(secret=secret)
    assert verifier.verify(issue_token(secret, "ann")).user_id == "ann"


def test_a_secret_and_a_public_key_together_are_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(KeyConfigurationError, match="both"):
        TokenVerifier(secret=SECRET, public_key=public_pem(rsa_key))


def test_no_key_at_all_is_refused() -> None:
    with pytest.raises(KeyConfigurationError, match="required"):
        TokenVerifier()


@pytest.mark.parametrize(
    "text",
    [
        "not a key",
        SECRET,
        '{"kty": "RSA", "n": "abc", "e": "AQAB"}',
        "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
        "-----BEGIN CERTIFICATE-----\nbm90IGEga2V5\n-----END CERTIFICATE-----\n",
    ],
)
def test_a_public_key_that_is_not_a_pem_public_key_is_refused(text: str) -> None:
    with pytest.raises(KeyConfigurationError, match="not a PEM public key"):
        TokenVerifier(public_key=text)


def test_a_pem_with_escaped_line_breaks_gets_a_hint(rsa_key: rsa.RSAPrivateKey) -> None:
    one_line = public_pem(rsa_key).replace("\n", "\\n")
    with pytest.raises(KeyConfigurationError, match=r"literal \\n"):
        TokenVerifier(public_key=one_line)


def test_a_private_key_is_refused_without_echoing_it(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = private_pem(rsa_key)
    with pytest.raises(KeyConfigurationError, match="private key") as caught:
        TokenVerifier(public_key=pem)
    body = pem.splitlines()[1]
    assert body not in str(caught.value)


def test_a_public_key_that_is_not_rsa_is_refused() -> None:
    pem = public_pem(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(KeyConfigurationError, match="not an RSA key"):
        TokenVerifier(public_key=pem)


def test_an_rsa_key_under_2048_bits_is_refused() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(KeyConfigurationError, match="1024 bits; at least 2048"):
        TokenVerifier(public_key=public_pem(weak))
