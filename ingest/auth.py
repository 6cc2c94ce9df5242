"""The write path's names for bearer-token authentication, which lives in `infra.tokens`.

The verifier is shared with the live service, so it sits in the plumbing both
sides use; the write path keeps importing it from here.
"""

from infra.tokens import (
    ADMIN_ROLE,
    KeyConfigurationError,
    Principal,
    TokenVerifier,
    check_hs256_secret,
    issue_token,
    load_rs256_public_key,
)

__all__ = [
    "ADMIN_ROLE",
    "KeyConfigurationError",
    "Principal",
    "TokenVerifier",
    "check_hs256_secret",
    "issue_token",
    "load_rs256_public_key",
]
