"""Bearer-token authentication: JWTs signed with HS256 (shared secret) or RS256 (public key).

Shared by every process that answers users (the write path and the live
service), so that both verify tokens and read roles in exactly one way.

The algorithm is pinned by the key that is configured, `exp` and `sub` are
required, and any failure is an `Unauthenticated` error whose message says why
without echoing the token. A key that cannot verify tokens safely (an HS256
secret under 32 bytes, an RS256 key that is not a PEM RSA public key of at
least 2048 bits, or both kinds at once) raises `KeyConfigurationError` when the
verifier is built, so a misconfigured process stops at start instead of
answering every request with 401.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from infra.errors import Unauthenticated
from infra.layout import MAX_USER_ID_LENGTH

log = logging.getLogger(__name__)

ADMIN_ROLE = "admin"

# RFC 7518 section 3.2: an HS256 key must be at least as long as the hash output.
MIN_SECRET_BYTES = 32
# RFC 7518 section 3.3: RSA keys of 2048 bits or more.
MIN_RSA_KEY_BITS = 2048


class KeyConfigurationError(ValueError):
    """The configured secret or public key cannot verify tokens safely."""


@dataclass(frozen=True)
class Principal:
    user_id: str
    roles: frozenset[str]
    expires_at: float | None = None
    """The token's `exp` (Unix seconds): a long-lived connection ends there."""

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles


class TokenVerifier:
    def __init__(self, *, secret: str | None = None, public_key: str | None = None) -> None:
        if secret and public_key:
            # Picking one silently would leave the operator believing the other is in force.
            raise KeyConfigurationError(
                "both an HS256 secret and an RS256 public key are set; set exactly one"
            )
        self._key: str | RSAPublicKey
        if public_key:
            self._key = load_rs256_public_key(public_key)
            self._algorithms = ["RS256"]
        elif secret:
            check_hs256_secret(secret)
            self._key = secret
            self._algorithms = ["HS256"]
        else:
            raise KeyConfigurationError("a JWT secret (HS256) or public key (RS256) is required")

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                options={"require": ["exp", "sub"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"the token is not valid: {error}") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated("the token names no user (sub)")
        if len(subject) > MAX_USER_ID_LENGTH:
            raise Unauthenticated(f"the token's user (sub) is over {MAX_USER_ID_LENGTH} characters")
        expiry = claims.get("exp")
        return Principal(
            user_id=subject,
            roles=_granted_roles(claims.get("roles"), subject),
            expires_at=float(expiry) if isinstance(expiry, int | float) else None,
        )

    def from_authorization(self, header: str | None) -> Principal:
        if not header:
            raise Unauthenticated("missing Authorization header (expected: Bearer <token>)")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must be: Bearer <token>")
        return self.verify(token.strip())


def _granted_roles(claim: object, subject: str) -> frozenset[str]:
    """The roles a `roles` claim grants: only a list of strings grants any.

    Any other shape (a string such as "admin", an object, a list holding a
    non-string) grants nothing, and the token is still accepted rather than
    answered with 401: its signature, expiry and subject were verified, so it
    does identify the user, and the claim only ever adds rights. Refusing the
    whole token would lock the user out of their own uploads over a claim those
    routes never read, while ignoring it cannot give anyone more than a plain
    user has. The warning lets an operator see why an admin gets 403.
    """
    if claim is None:
        return frozenset()
    if isinstance(claim, list) and all(isinstance(role, str) for role in claim):
        return frozenset(claim)
    log.warning(
        "ignoring the roles claim of %r: a %s, not a list of strings; it grants no role",
        subject,
        type(claim).__name__,
    )
    return frozenset()


def check_hs256_secret(secret: str) -> None:
    """Raise KeyConfigurationError unless the secret is long enough for HS256."""
    length = len(secret.encode())
    if length < MIN_SECRET_BYTES:
        raise KeyConfigurationError(
            f"the HS256 secret is {length} bytes; at least {MIN_SECRET_BYTES} random bytes "
            "are needed (e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )


def load_rs256_public_key(pem: str) -> RSAPublicKey:
    """The RSA public key in a PEM text; KeyConfigurationError if it is anything else."""
    if "PRIVATE KEY" in pem:
        # Never echo the text: it may be the private key, which must not reach a log.
        raise KeyConfigurationError(
            "the RS256 key is a private key; configure only the public key "
            "(-----BEGIN PUBLIC KEY-----): this service verifies tokens, it never signs them"
        )
    try:
        key = load_pem_public_key(pem.strip().encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        hint = " (it holds literal \\n sequences: use real line breaks)" if "\\n" in pem else ""
        raise KeyConfigurationError(
            f"the RS256 public key is not a PEM public key "
            f"(-----BEGIN PUBLIC KEY----- ... -----END PUBLIC KEY-----){hint}"
        ) from None
    if not isinstance(key, RSAPublicKey):
        raise KeyConfigurationError(
            f"the RS256 public key is not an RSA key ({type(key).__name__})"
        )
    if key.key_size < MIN_RSA_KEY_BITS:
        raise KeyConfigurationError(
            f"the RS256 public key has {key.key_size} bits; at least {MIN_RSA_KEY_BITS} are needed"
        )
    return key


def issue_token(
    secret: str, user_id: str, *, admin: bool = False, ttl_seconds: float = 3600.0
) -> str:
    """An HS256 token for development and tests."""
    now = int(time.time())
    claims = {
        "sub": user_id,
        "roles": [ADMIN_ROLE] if admin else [],
        "iat": now,
        "exp": now + int(ttl_seconds),
    }
    return jwt.encode(claims, secret, algorithm="HS256")
