"""Bearer-token authentication: JWTs signed with HS256 (shared secret) or RS256 (public key).

The algorithm is pinned by the key that is configured, `exp` and `sub` are
required, and any failure is an `Unauthenticated` error whose message says why
without echoing the token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from infra.layout import MAX_USER_ID_LENGTH
from ingest.errors import Unauthenticated

ADMIN_ROLE = "admin"


@dataclass(frozen=True)
class Principal:
    user_id: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles


class TokenVerifier:
    def __init__(self, *, secret: str | None = None, public_key: str | None = None) -> None:
        if public_key:
            self._key: str = public_key
            self._algorithms = ["RS256"]
        elif secret:
            self._key = secret
            self._algorithms = ["HS256"]
        else:
            raise ValueError("a JWT secret (HS256) or public key (RS256) is required")

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
        roles = claims.get("roles", [])
        if isinstance(roles, str):
            roles = roles.split()
        return Principal(user_id=subject, roles=frozenset(str(r) for r in roles))

    def from_authorization(self, header: str | None) -> Principal:
        if not header:
            raise Unauthenticated("missing Authorization header (expected: Bearer <token>)")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must be: Bearer <token>")
        return self.verify(token.strip())


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
